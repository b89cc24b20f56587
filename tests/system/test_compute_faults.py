"""Compute jobs survive faults on the real stack: a worker killed mid-unit, and the server's
processes killed and restarted mid-job without losing or recomputing a finished unit."""

from __future__ import annotations

import os
import signal
import time

import pytest

from ccgsc_client import Client
from tests.system.test_training import wait_for

pytestmark = pytest.mark.system

PRIMES_UP_TO_TWO_BILLION = 98_222_287
PRIMES_UP_TO_FOUR_BILLION = 189_961_812


def connected_workers(stack, count: int) -> tuple[Client, dict[str, int]]:
    """The client once ``count`` workers are connected, and their ids by name."""
    client = Client(stack.base_url, stack.token)
    wait_for(lambda: sum(w["connected"] for w in client.workers()) == count, 120, "workers")
    return client, {w["name"]: w["id"] for w in client.workers()}


def replicas_of(stack, job_id: int) -> list[tuple]:
    return stack.sql(
        "SELECT r.id, r.unit_id, r.worker_id, r.status, r.error, r.result, r.seconds, "
        "r.assigned_at, r.returned_at FROM jobs_unitreplica r "
        "JOIN jobs_workunit u ON u.id = r.unit_id WHERE u.job_id = %s ORDER BY r.id",
        job_id,
    )


def test_a_worker_killed_mid_unit_loses_its_unit_to_another_worker(stack) -> None:
    procs = [stack.spawn_worker(stack.enroll(f"volunteer-{i}"), dataset=None) for i in range(3)]
    client, ids = connected_workers(stack, 3)
    victim = ids["volunteer-0"]
    job = client.jobs.create(
        name="primes with a killed worker",
        type="compute",
        kernel="primes",
        config={"lo": 1, "hi": 2 * 10**9},
        policy={"unit_seconds": 0.6, "unit_deadline_s": 60, "replicas": 1, "quorum": 1},
    )
    job.start()

    def victim_unit() -> int | None:
        rows = stack.sql(
            "SELECT unit_id FROM jobs_unitreplica WHERE worker_id = %s AND status = 'assigned'",
            victim,
        )
        return rows[0][0] if rows else None

    unit_id = wait_for(victim_unit, 30, "a unit for the victim")
    time.sleep(0.2)  # it is computing now; a unit takes about a second
    assert victim_unit() == unit_id  # still mid-unit
    os.killpg(procs[0].pid, signal.SIGKILL)
    job.wait(timeout=60)

    assert job.status == "completed", job.data
    assert job.result() == {"lo": 1, "hi": 2 * 10**9, "count": PRIMES_UP_TO_TWO_BILLION}
    units = job.units()
    assert {u["status"] for u in units} == {"done"} and len(units) > 4
    assert sum(u["result"]["count"] for u in units) == PRIMES_UP_TO_TWO_BILLION
    (lost,) = stack.sql(
        "SELECT status, error FROM jobs_unitreplica WHERE worker_id = %s AND unit_id = %s",
        victim,
        unit_id,
    )
    assert lost == ("timeout", "disconnected")
    (killed_unit,) = [u for u in units if u["id"] == unit_id]
    assert killed_unit["worker"] not in {victim, None}  # computed by someone else
    assert killed_unit["attempts"] == 1
    others = stack.sql(
        "SELECT worker_id, status FROM jobs_unitreplica WHERE unit_id = %s AND worker_id <> %s",
        unit_id,
        victim,
    )
    assert others == [(killed_unit["worker"], "valid")]


def test_restarting_the_server_mid_job_keeps_every_finished_unit(stack) -> None:
    count = 3
    for i in range(count):
        stack.spawn_worker(stack.enroll(f"volunteer-{i}"), dataset=None)
    client, _ = connected_workers(stack, count)
    job = client.jobs.create(
        name="primes across a restart",
        type="compute",
        kernel="primes",
        config={"lo": 1, "hi": 4 * 10**9},
        policy={"unit_seconds": 0.25, "unit_deadline_s": 60, "replicas": 1, "quorum": 1},
    )
    job.start()

    def finished() -> list[tuple]:
        return [r for r in replicas_of(stack, job.id) if r[3] == "valid"]

    wait_for(lambda: len(finished()) >= 5, 60, "five finished units")
    stack.kill_daphne()
    stack.kill_celery()
    before = finished()
    cut = stack.sql(
        "SELECT id, start, stop FROM jobs_workunit WHERE job_id = %s ORDER BY index", job.id
    )
    assert cut[-1][2] < 4 * 10**9 + 1  # the restart lands mid-job, with space left to cut
    stack.start_daphne()
    stack.start_celery()
    job.wait(timeout=90)

    assert job.status == "completed", job.data
    assert job.result() == {"lo": 1, "hi": 4 * 10**9, "count": PRIMES_UP_TO_FOUR_BILLION}
    units = job.units()
    assert {u["status"] for u in units} == {"done"} and len(units) > len(cut)
    assert [(u["id"], u["start"], u["stop"]) for u in units[: len(cut)]] == cut  # kept as cut
    assert sum(u["result"]["count"] for u in units) == PRIMES_UP_TO_FOUR_BILLION
    after = {r[0]: r for r in replicas_of(stack, job.id)}
    assert all(after[r[0]] == r for r in before)  # same row, result, seconds and timestamps
    done_before = {r[1] for r in before}
    assert sorted(r[1] for r in after.values() if r[1] in done_before) == sorted(done_before)
    by_id = {u["id"]: u for u in units}
    for _, unit_id, worker_id, _, _, result, _, _, _ in before:
        assert by_id[unit_id]["result"] == result and by_id[unit_id]["worker"] == worker_id
