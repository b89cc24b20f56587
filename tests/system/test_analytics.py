"""Analytics jobs end to end on the real stack: a private histogram over four workers' rows."""

from __future__ import annotations

import numpy as np
import pytest

from ccgsc_client import Client
from kernels import load_shard
from kernels.noise import discrete_laplace_bound
from tests.system.test_training import wait_for

pytestmark = pytest.mark.system

# A private histogram of one pixel of the digits (standardized), 50 rows from each worker.
HISTOGRAM = {
    "statistic": "histogram",
    "column": 20,
    "lo": -2.0,
    "hi": 2.0,
    "bins": 8,
    "max_rows": 50,
    "epsilon": 5.0,
}


def test_four_python_workers_release_a_private_histogram_within_its_noise_bound(stack) -> None:
    count = 4
    for i in range(count):
        stack.spawn_worker(stack.enroll(f"holder-{i}"), f"{i}/{count}", dataset="digits")
    client = Client(stack.base_url, stack.token)
    wait_for(lambda: sum(w["connected"] for w in client.workers()) == count, 120, "workers")
    config = HISTOGRAM
    job = client.jobs.create(
        name="pixel 20",
        type="analytics",
        kernel="analytics",
        config=config,
        policy={"min_workers": count, "epsilon_budget": 5.0, "deadline_s": 120},
    )
    job.start()
    job.wait(timeout=120)

    assert job.status == "completed", job.data
    body = client.get(f"jobs/{job.id}/result/")
    released = body["result"]
    assert body["epsilon_spent"] == config["epsilon"] == released["epsilon"]
    assert released["contributions"] == count and released["rejected"] == 0
    shards = [load_shard("digits", i, count, "iid", 0)[0] for i in range(count)]
    exact = sum(exact_histogram(X, config) for X in shards)
    assert exact.sum() == count * config["max_rows"]
    scale = released["noise_scale"]["hist"]
    assert scale == config["max_rows"] / config["epsilon"]
    errors = np.abs(np.array(released["hist"]) - exact)
    assert np.all(errors <= discrete_laplace_bound(scale, 0.999999)), (
        released["hist"],
        exact.tolist(),
    )
    assert np.any(errors > 0)  # noise was added
    assert released["mechanism"] == "discrete_laplace"
    assert all(isinstance(count, int) for count in released["hist"])  # integer noise
    assert job.refresh().data["privacy"] == {"epsilon_spent": 5.0, "epsilon_budget": 5.0}


def exact_histogram(X: np.ndarray, config: dict) -> np.ndarray:
    """One worker's histogram: its first max_rows values of the column, clipped to [lo, hi]."""
    values = np.clip(X[: config["max_rows"], config["column"]], config["lo"], config["hi"])
    span = (config["lo"], config["hi"])
    return np.histogram(values, bins=config["bins"], range=span)[0]
