"""Seconds per FedAvg round for N networked Python workers on the real stack.

Starts Postgres/Redis-backed Daphne and a Celery worker as separate processes (tests/stack.py),
connects N workers (each its own WebSocket, run as asyncio tasks in a few client processes so
that 100 workers fit on two cores), runs a softmax job on digits and prints the median seconds
between round closes, the server's peak memory, and the same for each N. Never fails on time.

    python bench/round.py [--workers 10 100] [--rounds 8] [--clients 4]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ccgsc_client import Client  # noqa: E402
from tests.stack import Stack  # noqa: E402


class PeakRss(threading.Thread):
    """Samples the resident memory of a process tree until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc, self.peak, self.running = psutil.Process(pid), 0, True

    def run(self) -> None:
        while self.running:
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.05)


def spawn_fleet(stack: Stack, tmp: Path, n: int, clients: int) -> list[subprocess.Popen]:
    tokens = [stack.enroll(f"bench-{i}") for i in range(n)]
    procs, per = [], -(-n // clients)
    for c in range(clients):
        part = tokens[c * per : (c + 1) * per]
        if not part:
            break
        path = tmp / f"tokens-{c}.txt"
        path.write_text("\n".join(part))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "bench/fleet.py",
                    "--server",
                    stack.ws_url,
                    "--tokens",
                    str(path),
                    "--shard-base",
                    str(c * per),
                    "--count",
                    str(n),
                ],
                cwd=Path(__file__).resolve().parent.parent,
                env=stack.env,
                start_new_session=True,
            )
        )
    return procs


def measure(n: int, rounds: int, clients: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        stack = Stack(tmp).start()
        try:
            stack.workers.extend(spawn_fleet(stack, tmp, n, clients))
            client = Client(stack.base_url, stack.token)
            deadline = time.monotonic() + 300
            while sum(w["connected"] for w in client.workers()) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not connect")
                time.sleep(0.2)
            peak = PeakRss(stack.daphne.pid)
            peak.start()
            job = client.jobs.create(
                name=f"bench {n}",
                kernel="softmax",
                config={"dataset": "digits"},
                policy={
                    "cohort_size": n,
                    "min_reports": n,
                    "max_rounds": rounds,
                    "selection_timeout_s": 0,
                },
            )
            started = time.perf_counter()
            job.start().wait(timeout=600, poll=0.2)
            wall = time.perf_counter() - started
            peak.running = False
            ends = [datetime.fromisoformat(r["ended_at"]) for r in job.rounds()]
            gaps = [(b - a).total_seconds() for a, b in zip(ends, ends[1:], strict=False)]
            return {
                "n": n,
                "status": job.status,
                "rounds": len(ends),
                "wall": wall,
                "median": statistics.median(gaps),
                "min": min(gaps),
                "max": max(gaps),
                "accuracy": job.data["latest_model"]["metrics"].get("accuracy"),
                "rss_mb": peak.peak / 2**20,
            }
        finally:
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    args = parser.parse_args()
    print(
        f"softmax on digits, {args.rounds} rounds per run; round time = gap between "
        "consecutive round closes (select, assign, fetch, train, upload, aggregate)"
    )
    print(
        f"{'workers':>7} {'median s':>9} {'min s':>7} {'max s':>7} {'wall s':>7} "
        f"{'accuracy':>8} {'server peak MB':>14}"
    )
    for n in args.workers:
        r = measure(n, args.rounds, args.clients)
        print(
            f"{r['n']:>7} {r['median']:>9.3f} {r['min']:>7.3f} {r['max']:>7.3f} "
            f"{r['wall']:>7.2f} {r['accuracy']:>8.3f} {r['rss_mb']:>14.1f}  ({r['status']})"
        )


if __name__ == "__main__":
    main()
