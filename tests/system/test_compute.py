"""A compute job end to end on the real stack: six Python workers count the primes below 10^7."""

from __future__ import annotations

import pytest

from ccgsc_client import Client
from tests.system.test_training import wait_for

pytestmark = pytest.mark.system


def test_six_python_workers_count_the_primes_up_to_ten_million(stack) -> None:
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
        policy={"unit_seconds": 2e-4, "unit_deadline_s": 60},
    )
    job.start()
    job.wait(timeout=180)

    assert job.status == "completed", job.data
    assert job.result() == {"lo": 1, "hi": 10**7, "count": 664_579}
    units = job.units()
    assert len(units) > 30 and {u["status"] for u in units} == {"done"}
    assert [u["start"] for u in units[1:]] == [u["stop"] for u in units[:-1]]
    assert units[0]["start"] == 1 and units[-1]["stop"] == 10**7 + 1
    assert len({u["worker"] for u in units}) > 1  # the work was shared
    assert sum(u["result"]["count"] for u in units) == 664_579
