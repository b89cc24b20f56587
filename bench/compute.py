"""Units per second and per-unit scheduling overhead of a primes job on N Python compute workers.

Starts Postgres/Redis-backed Daphne and a Celery worker as separate processes (tests/stack.py),
connects N compute-only worker processes, runs a primes job cut into a few hundred small units,
once with one replica per unit and once with two (every unit spot-checked, so none goes out
alone), and prints units/s, wall time, the kernel's own time per unit and the server's
scheduling overhead per unit: the time from a replica's result being recorded to the same
worker's next replica being assigned, from the replicas' database timestamps. The baseline is
the same units computed one after another in this process. Then a sizing run: two workers,
one computing a quarter of the time, with units cut per worker to take ``--sizing-seconds``;
it prints each worker's measured speed and its units' cost and seconds, next to its first
unit's (cut at the nominal speed, as with no sizing). Never fails on time.

    python bench/compute.py [--workers 10] [--hi 1000000000] [--units 400] [--replicas 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ccgsc_client import Client  # noqa: E402
from kernels.compute import get_compute_kernel  # noqa: E402
from tests.stack import Stack  # noqa: E402


def unit_seconds_for(config: dict, units: int) -> float:
    """The ``unit_seconds`` policy that cuts the job into about ``units`` units."""
    kernel = get_compute_kernel("primes")
    resolved = kernel.resolve_config(config)
    lo, hi = kernel.space(resolved)
    return kernel.cost(resolved, lo, hi) / units


def local_baseline(config: dict, unit_seconds: float) -> tuple[int, float, int]:
    """(units, seconds, prime count) for the job's units run one after another here."""
    kernel = get_compute_kernel("primes")
    resolved = kernel.resolve_config(config)
    units = kernel.split(resolved, target_cost=unit_seconds)
    started = time.perf_counter()
    count = sum(kernel.run(u, resolved)["count"] for u in units)
    return len(units), time.perf_counter() - started, count


def overheads(rows: list[tuple]) -> list[float]:
    """Seconds from each returned replica to its worker's next assigned replica."""
    by_worker: dict[int, list[tuple]] = defaultdict(list)
    for worker_id, assigned_at, returned_at, _ in rows:
        by_worker[worker_id].append((assigned_at, returned_at))
    gaps = []
    for replicas in by_worker.values():
        replicas.sort()
        for (_, returned), (assigned, _) in zip(replicas, replicas[1:], strict=False):
            if returned is not None:
                gaps.append((assigned - returned).total_seconds())
    return gaps


def measure(workers: int, config: dict, unit_seconds: float, replicas: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp_name:
        stack = Stack(Path(tmp_name)).start()
        try:
            for i in range(workers):
                stack.spawn_worker(stack.enroll(f"bench-{i}"), dataset=None)
            client = Client(stack.base_url, stack.token)
            deadline = time.monotonic() + 180
            while sum(w["connected"] for w in client.workers()) < workers:
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not connect")
                time.sleep(0.2)
            job = client.jobs.create(
                name=f"bench primes x{replicas}",
                type="compute",
                kernel="primes",
                config=config,
                policy={
                    "unit_seconds": unit_seconds,
                    "unit_deadline_s": 120,
                    "replicas": replicas,
                    "quorum": replicas,
                    "spot_check_rate": 1.0,
                },
            )
            started = time.perf_counter()
            job.start().wait(timeout=900, poll=0.1)
            wall = time.perf_counter() - started
            rows = stack.sql(
                "SELECT r.worker_id, r.assigned_at, r.returned_at, r.seconds "
                "FROM jobs_unitreplica r JOIN jobs_workunit u ON u.id = r.unit_id "
                "WHERE u.job_id = %s",
                job.id,
            )
            ((job_started, job_ended),) = stack.sql(
                "SELECT started_at, ended_at FROM jobs_job WHERE id = %s", job.id
            )
            units = job.units()
            returned = [r for r in rows if r[2] is not None]
            compute = [r[3] for r in returned]
            trips = [(r[2] - r[1]).total_seconds() - r[3] for r in returned]
            server = (job_ended - job_started).total_seconds()
            return {
                "status": job.status,
                "count": (job.result() or {}).get("count"),
                "units": len(units),
                "replicas": len(rows) / len(units),
                "wall": wall,
                "server": server,
                "rate": len(units) / server,
                "overhead": overheads(rows),
                "compute": compute,
                "trip": trips,
                "busy": sum(compute) / (server * workers),
            }
        finally:
            stack.stop()


def measure_sizing(hi: int, unit_seconds: float) -> list[dict]:
    """Two workers, one computing all the time and one a quarter of it (``--cpu-limit 25``),
    on a primes job with units sized per worker: for each, its measured speed, and the cost
    and seconds of its first unit (cut at the nominal speed, as with no sizing) and of the
    rest (cut at its measured speed)."""
    with tempfile.TemporaryDirectory() as tmp_name:
        stack = Stack(Path(tmp_name)).start()
        try:
            names = {"full": 100, "quarter": 25}
            for name, limit in names.items():
                stack.spawn_worker(stack.enroll(name), dataset=None, cpu_limit=limit)
            client = Client(stack.base_url, stack.token)
            deadline = time.monotonic() + 180
            while sum(w["connected"] for w in client.workers()) < len(names):
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not connect")
                time.sleep(0.2)
            job = client.jobs.create(
                name="bench sizing",
                type="compute",
                kernel="primes",
                config={"lo": 1, "hi": hi},
                policy={"unit_seconds": unit_seconds, "replicas": 1, "quorum": 1},
            )
            job.start().wait(timeout=900, poll=0.2)
            units = sorted(job.units(), key=lambda u: u["index"])
            rows = []
            for worker in client.workers():
                mine = [u for u in units if u["worker"] == worker["id"]]
                rest = mine[1:]
                rows.append(
                    {
                        "name": worker["name"],
                        "status": job.status,
                        "speed": worker["compute_speeds"].get("primes"),
                        "units": len(mine),
                        "first_cost": mine[0]["cost"],
                        "first_s": mine[0]["seconds"],
                        "cost": statistics.median(u["cost"] for u in rest) if rest else None,
                        "seconds": [u["seconds"] for u in rest],
                    }
                )
            return rows
        finally:
            stack.stop()


def ms(values: list[float], how) -> str:  # noqa: ANN001 - statistics.mean or median
    return f"{1000 * how(values):.1f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--hi", type=int, default=10**9, help="count the primes in [1, hi]")
    parser.add_argument("--units", type=int, default=400, help="about this many units")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--sizing-seconds", type=float, default=0.3, help="unit_seconds of the sizing run"
    )
    parser.add_argument("--sizing-hi", type=int, default=10**10, help="its primes in [1, hi]")
    args = parser.parse_args()
    config = {"lo": 1, "hi": args.hi}
    unit_seconds = unit_seconds_for(config, args.units)
    n_units, serial, count = local_baseline(config, unit_seconds)
    print(
        f"primes in [1, {args.hi:,}] on {args.workers} worker processes, "
        f"unit_seconds={unit_seconds:.2e} ({n_units} units)"
    )
    print(
        f"baseline: the same units one after another in this process: {serial:.2f} s, "
        f"{1000 * serial / n_units:.2f} ms/unit, {n_units / serial:.0f} units/s, count {count:,}"
    )
    print(
        "overhead = server time from a replica's result recorded to its worker's next replica "
        "assigned; trip = assigned to recorded minus the kernel's own seconds (send, queue, "
        "receive); busy = kernel seconds / (job seconds x workers)"
    )
    print(
        f"{'replicas':>8} {'units':>5} {'per unit':>8} {'units/s':>8} {'job s':>6} "
        f"{'wall s':>6} {'kernel ms':>15} {'overhead ms':>15} {'trip ms':>15} {'busy':>5}"
    )
    print(f"{'':>8} {'':>5} {'':>8} {'':>8} {'':>6} {'':>6} " + f"{'mean / median':>15} " * 3)
    for replicas in args.replicas:
        r = measure(args.workers, config, unit_seconds, replicas)
        ok = "right count" if r["count"] == count else f"count {r['count']}, expected {count}"
        cells = [
            f"{ms(r[key], statistics.mean):>6} / {ms(r[key], statistics.median):<6}"
            for key in ("compute", "overhead", "trip")
        ]
        print(
            f"{replicas:>8} {r['units']:>5} {r['replicas']:>8.2f} {r['rate']:>8.1f} "
            f"{r['server']:>6.2f} {r['wall']:>6.2f} {cells[0]:>15} {cells[1]:>15} "
            f"{cells[2]:>15} {r['busy']:>5.0%}  ({r['status']}, {ok})"
        )
    target = args.sizing_seconds
    print(
        f"\nunits sized per worker: unit_seconds={target}, a worker computing all the time and "
        "one a quarter of it (--cpu-limit 25); its first unit is cut at the nominal speed, "
        "as with no sizing, the rest at its measured speed"
    )
    print(
        f"{'worker':>8} {'speed':>7} {'units':>5} {'first cost':>10} {'first s':>8} "
        f"{'cost':>8} {'s median':>8} {'s min-max':>11}"
    )
    for r in measure_sizing(args.sizing_hi, target):
        seconds = r["seconds"]
        spread = f"{min(seconds):.2f}-{max(seconds):.2f}" if seconds else "-"
        median = f"{statistics.median(seconds):.3f}" if seconds else "-"
        cost = f"{r['cost']:.4f}" if r["cost"] is not None else "-"
        print(
            f"{r['name']:>8} {r['speed'] or 0:>7.3f} {r['units']:>5} {r['first_cost']:>10.4f} "
            f"{r['first_s']:>8.3f} {cost:>8} {median:>8} {spread:>11}  ({r['status']})"
        )


if __name__ == "__main__":
    main()
