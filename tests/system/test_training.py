"""A training job end to end on the real stack: Daphne, a Celery worker, Postgres, Redis and
ten Python worker processes."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from ccgsc_client import Client, wire
from kernels import get_kernel, load_dataset

pytestmark = pytest.mark.system


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def recomputed_models(stack, job_id: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """For each closed round: (round id, stored new model, base + weighted mean of updates)."""
    rounds = stack.sql(
        "SELECT r.id, b.artifact, b.length, m.artifact FROM rounds_round r "
        "JOIN registry_modelversion b ON b.id = r.base_model_id "
        "JOIN registry_modelversion m ON m.fl_round_id = r.id "
        "WHERE r.job_id = %s AND r.status = 'closed' ORDER BY r.number",
        job_id,
    )
    out = []
    for round_id, base_key, length, new_key in rounds:
        base = _load(stack, base_key, length)
        updates = stack.sql(
            "SELECT update_key, num_samples FROM rounds_assignment "
            "WHERE fl_round_id = %s AND status = 'reported'",
            round_id,
        )
        total = sum(n for _, n in updates)
        mean = sum(_load(stack, key, length).astype(np.float64) * n for key, n in updates) / total
        out.append((round_id, _load(stack, new_key, length), base + mean))
    return out


def _load(stack, key: str, length: int) -> np.ndarray:
    return wire.decode_tensor((stack.media / key).read_bytes(), "f32", length)


def test_ten_python_workers_train_three_rounds_and_survive_a_killed_worker(stack) -> None:
    count = 10
    tokens = [stack.enroll(f"hospital-{i}") for i in range(count)]
    # Worker 0 is slow, so it is still training when it is killed in round 2.
    procs = [
        stack.spawn_worker(token, f"{i}/{count}", delay=3.0 if i == 0 else 0.0)
        for i, token in enumerate(tokens)
    ]
    client = Client(stack.base_url, stack.token)
    wait_for(lambda: sum(w["connected"] for w in client.workers()) == count, 120, "workers")
    job = client.jobs.create(
        name="system",
        kernel="softmax",
        config={"dataset": "digits", "epochs": 2},
        policy={
            "cohort_size": count,
            "min_reports": 8,
            "max_rounds": 3,
            "round_deadline_s": 60,
            "selection_timeout_s": 2,
        },
    )
    job.start()

    def round_two_training():
        return [r for r in job.rounds() if r["number"] == 2 and r["status"] == "training"]

    wait_for(round_two_training, 60, "round 2")
    time.sleep(0.5)
    os.killpg(procs[0].pid, signal.SIGKILL)
    job.wait(timeout=120)

    assert job.status == "completed", job.data
    rounds = job.rounds()
    assert [(r["number"], r["status"]) for r in rounds] == [
        (1, "closed"),
        (2, "closed"),
        (3, "closed"),
    ]
    assert rounds[0]["participants"] == count
    assert rounds[1]["dropped"] == 1 and rounds[1]["participants"] == count - 1
    killed = stack.sql(
        "SELECT a.status FROM rounds_assignment a JOIN jobs_worker w ON w.id = a.worker_id "
        "JOIN rounds_round r ON r.id = a.fl_round_id WHERE w.name = 'hospital-0' "
        "AND r.number = 2"
    )
    assert killed == [("dropped",)]

    # The global model improves on the held-out split.
    data = load_dataset("digits")
    kernel = get_kernel("softmax")
    models = job.models()
    accuracy = [
        kernel.evaluate(
            client.download_model(m["id"]), data.X_test, data.y_test, job.data["config"]
        )["accuracy"]
        for m in models
    ]
    assert len(accuracy) == 4 and accuracy[-1] > 0.85 > accuracy[0]
    assert accuracy[3] >= accuracy[1] - 0.01
    assert [m["metrics"]["accuracy"] for m in models[1:]] == pytest.approx(accuracy[1:])

    # Every accepted update was aggregated exactly once: each stored model equals its base plus
    # the sample-weighted mean of that round's reported updates, and nothing else was marked.
    for _, stored, expected in recomputed_models(stack, job.id):
        np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-6)
    wrong = stack.sql(
        "SELECT count(*) FROM rounds_assignment WHERE aggregated <> (status = 'reported')"
    )
    assert wrong == [(0,)]
