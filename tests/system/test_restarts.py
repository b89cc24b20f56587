"""A job survives its server processes: Daphne killed and restarted mid-round, the Celery
worker killed and restarted while an aggregation waits for it. State lives in Postgres, so no
update is lost and none is counted twice."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ccgsc_client import Client
from tests.system.test_training import recomputed_models, wait_for

pytestmark = pytest.mark.system


def test_a_job_survives_a_killed_daphne_and_a_killed_celery_worker(stack) -> None:
    count = 6
    for i in range(count):
        # Slow workers, so that a kill lands while updates are being trained and uploaded.
        stack.spawn_worker(stack.enroll(f"silo-{i}"), f"{i}/{count}", delay=1.5)
    client = Client(stack.base_url, stack.token)
    wait_for(lambda: sum(w["connected"] for w in client.workers()) == count, 120, "workers")
    job = client.jobs.create(
        name="restarts",
        kernel="softmax",
        config={"dataset": "digits"},
        policy={
            "cohort_size": count,
            "min_reports": count,
            "max_rounds": 4,
            "round_deadline_s": 60,
            "selection_timeout_s": 2,
        },
    )
    job.start()

    def training(number: int):
        return [r for r in job.rounds() if r["number"] == number and r["status"] == "training"]

    wait_for(lambda: training(2), 60, "round 2")
    stack.kill_daphne()
    time.sleep(1.0)
    stack.start_daphne()  # the workers reconnect and are offered their assignments again

    wait_for(lambda: training(3), 60, "round 3")
    stack.kill_celery()
    # Round 3's reports arrive while no Celery worker runs: its aggregation waits in Redis.
    wait_for(
        lambda: [r for r in job.rounds() if r["number"] == 3 and r["status"] == "aggregating"],
        60,
        "round 3 to await aggregation",
    )
    stack.start_celery()
    job.wait(timeout=120)

    assert job.status == "completed", job.data
    rounds = job.rounds()
    assert [r["number"] for r in rounds if r["status"] == "closed"] == [1, 2, 3, 4]
    assert all(r["participants"] == count for r in rounds if r["status"] == "closed")
    for _, stored, expected in recomputed_models(stack, job.id):
        np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-6)
    assert stack.sql(
        "SELECT count(*) FROM rounds_assignment WHERE aggregated <> (status = 'reported')"
    ) == [(0,)]
    versions = stack.sql("SELECT version FROM registry_modelversion ORDER BY version")
    assert versions == [(v,) for v in range(5)]
