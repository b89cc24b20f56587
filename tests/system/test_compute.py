"""Compute jobs end to end on the real stack: replicated prime counts, and a faulty worker."""

from __future__ import annotations

import pytest

from ccgsc_client import Client
from tests.system.test_training import wait_for

pytestmark = pytest.mark.system


def test_six_python_workers_count_the_primes_up_to_ten_million_twice_over(stack) -> None:
    count = 6
    for i in range(count):
        stack.spawn_worker(stack.enroll(f"volunteer-{i}"), dataset=None)
    client = Client(stack.base_url, stack.token)
    wait_for(lambda: sum(w["connected"] for w in client.workers()) == count, 120, "workers")
    assert all("primes" in w["capabilities"]["kernels"] for w in client.workers())
    job = client.jobs.create(
        name="primes",
        type="compute",
        kernel="primes",
        config={"lo": 1, "hi": 10**7},
        policy={"unit_seconds": 2e-4, "replicas": 2, "spot_check_rate": 1.0},  # all checked
    )
    job.start()
    job.wait(timeout=240)

    assert job.status == "completed", job.data
    assert job.result() == {"lo": 1, "hi": 10**7, "count": 664_579}
    units = job.units()
    assert len(units) > 30 and {u["status"] for u in units} == {"done"}
    assert all(u["replicas"] >= 2 and u["quorum"] == 2 for u in units)
    assert [u["start"] for u in units[1:]] == [u["stop"] for u in units[:-1]]
    assert units[0]["start"] == 1 and units[-1]["stop"] == 10**7 + 1
    assert len({u["worker"] for u in units}) > 1  # the work was shared
    assert sum(u["result"]["count"] for u in units) == 664_579
    workers = client.workers()
    assert sum(w["credit"] for w in workers) == pytest.approx(2 * sum(u["cost"] for u in units))


def test_a_worker_returning_wrong_counts_is_outvoted_and_earns_nothing(stack) -> None:
    honest = [stack.enroll(f"honest-{i}") for i in range(3)]
    for token in honest:
        stack.spawn_worker(token, dataset=None)
    stack.spawn_worker(stack.enroll("faulty"), dataset=None, faulty_compute=True)
    client = Client(stack.base_url, stack.token)
    wait_for(lambda: sum(w["connected"] for w in client.workers()) == 4, 120, "workers")
    job = client.jobs.create(
        name="primes with a faulty volunteer",
        type="compute",
        kernel="primes",
        config={"lo": 1, "hi": 10**6},
        policy={"unit_seconds": 2e-5, "unit_deadline_s": 60, "replicas": 2},
    )
    job.start()
    job.wait(timeout=180)

    assert job.status == "completed", job.data
    assert job.result() == {"lo": 1, "hi": 10**6, "count": 78_498}
    units = job.units()
    assert {u["status"] for u in units} == {"done"} and len(units) > 5
    workers = {w["name"]: w for w in client.workers()}
    faulty = workers.pop("faulty")
    assert faulty["id"] not in {u["worker"] for u in units}  # never the canonical result
    assert faulty["credit"] == 0.0 and faulty["trust"] < 0.5
    assert all(w["credit"] > 0 and w["trust"] > 0.5 for w in workers.values())
    outvoted = [u for u in units if u["replicas"] > 2]
    assert outvoted  # the faulty worker's units needed a third replica


def test_each_worker_gets_units_sized_to_take_it_about_unit_seconds(stack) -> None:
    """A worker that computes a quarter of the time (``--cpu-limit 25``) is measured four
    times slower and gets units a quarter the size, so that a unit takes either worker about
    the policy's ``unit_seconds``."""
    stack.spawn_worker(stack.enroll("full"), dataset=None)
    stack.spawn_worker(stack.enroll("quarter"), dataset=None, cpu_limit=25)
    client = Client(stack.base_url, stack.token)
    wait_for(lambda: sum(w["connected"] for w in client.workers()) == 2, 120, "workers")
    target = 0.3
    job = client.jobs.create(
        name="primes sized per worker",
        type="compute",
        kernel="primes",
        config={"lo": 1, "hi": 2 * 10**9},
        policy={"unit_seconds": target, "replicas": 1, "quorum": 1},
    )
    job.start()
    job.wait(timeout=180)

    assert job.status == "completed", job.data
    assert job.result() == {"lo": 1, "hi": 2 * 10**9, "count": 98_222_287}
    workers = {w["name"]: w for w in client.workers()}
    full, quarter = (workers[name]["compute_speeds"]["primes"] for name in ("full", "quarter"))
    assert 2.5 < full / quarter < 6  # four, give or take the machine's noise
    units = sorted(job.units(), key=lambda u: u["index"])
    for name in ("full", "quarter"):
        # A worker's first unit is cut at the nominal speed; the rest at its measured one.
        mine = [u for u in units if u["worker"] == workers[name]["id"]][1:]
        assert len(mine) >= 3, name
        seconds = sorted(u["seconds"] for u in mine)[len(mine) // 2]
        assert target / 3 < seconds < target * 3, (name, seconds)
    cost = {
        name: sorted(u["cost"] for u in units if u["worker"] == workers[name]["id"])[1:]
        for name in ("full", "quarter")
    }
    assert 2 < cost["full"][len(cost["full"]) // 2] / cost["quarter"][len(cost["quarter"]) // 2]


def test_a_worker_with_three_slots_runs_three_units_at_once(stack) -> None:
    stack.spawn_worker(stack.enroll("three-slots"), dataset=None, slots=3)
    client = Client(stack.base_url, stack.token)
    wait_for(lambda: sum(w["connected"] for w in client.workers()) == 1, 120, "the worker")
    (worker,) = client.workers()
    assert worker["capabilities"]["slots"] == 3
    job = client.jobs.create(
        name="primes three at a time",
        type="compute",
        kernel="primes",
        config={"lo": 1, "hi": 10**9},
        policy={"unit_seconds": 0.05, "replicas": 1, "quorum": 1},
    )
    job.start()
    job.wait(timeout=180)

    assert job.status == "completed", job.data
    assert job.result() == {"lo": 1, "hi": 10**9, "count": 50_847_534}
    assert (job.progress["percent"], job.progress["cut_percent"]) == (100, 100)
    assert job.progress["finished"] == job.progress["total"] > 6
    rows = stack.sql(
        "SELECT r.assigned_at, r.returned_at FROM jobs_unitreplica r "
        "JOIN jobs_workunit u ON u.id = r.unit_id WHERE u.job_id = %s",
        job.id,
    )
    assert len(rows) > 6
    assert most_in_flight(rows) == 3  # never more than its slots, and all of them used


def most_in_flight(intervals: list[tuple]) -> int:
    """The most (start, end) intervals open at one time; one ending as another starts at the
    same instant does not overlap it."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running, most = 0, 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most
