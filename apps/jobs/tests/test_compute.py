"""Work units of compute jobs on the real database: split, claim, result, requeue, reduce."""

from __future__ import annotations

import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone

from apps.jobs import compute
from apps.jobs import services as job_services
from apps.jobs.models import Job, Worker, WorkUnit
from apps.testing import make_compute_job, make_compute_worker, make_tenant
from kernels.compute import get_compute_kernel
from kernels.primes import count_primes

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent():
    """Frames the services hand to the gateway (after commit)."""
    frames: list[tuple[str, dict]] = []
    with mock.patch(
        "apps.jobs.gateway.send_frames",
        side_effect=lambda batch, contexts=None: frames.extend(batch),
    ):
        yield frames


@pytest.fixture
def tenant():
    return make_tenant()


def start(job: Job, capture, execute: bool = False) -> list[WorkUnit]:
    with capture(execute=execute):
        job_services.job_start(job_id=job.id)
    return list(job.units.order_by("index"))


def dispatch(worker: Worker, capture) -> WorkUnit | None:
    with capture(execute=True):
        compute.unit_dispatch(worker_id=worker.id)
    return WorkUnit.objects.filter(worker=worker, status=WorkUnit.Status.ASSIGNED).first()


def right_result(unit: WorkUnit) -> dict:
    kernel = get_compute_kernel(unit.job.kernel)
    return kernel.run({"start": unit.start, "stop": unit.stop}, unit.job.config)


def test_it_cuts_the_whole_space_into_consecutive_units_when_the_job_starts(
    tenant, django_capture_on_commit_callbacks
) -> None:
    job = make_compute_job(tenant)
    units = start(job, django_capture_on_commit_callbacks)
    assert len(units) == 5 and [u.index for u in units] == list(range(5))
    assert units[0].start == 1 and units[-1].stop == 100_001
    assert all(a.stop == b.start for a, b in zip(units, units[1:], strict=False))
    assert {u.status for u in units} == {"pending"} and job.policy["max_attempts"] == 3


def test_it_hands_an_idle_worker_one_unit_of_a_kernel_it_runs(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    other = make_compute_worker(tenant, kernels=["montecarlo"])
    job = make_compute_job(tenant)
    start(job, django_capture_on_commit_callbacks)
    unit = dispatch(worker, django_capture_on_commit_callbacks)
    assert unit is not None and unit.index == 0 and unit.deadline > timezone.now()
    assert dispatch(other, django_capture_on_commit_callbacks) is None
    channel, frame = sent[-1]
    assert channel == worker.channel_name and frame["type"] == "unit"
    assert frame["unit"] == unit.id and frame["spec"] == {"start": unit.start, "stop": unit.stop}
    # Asked again, the worker is sent the unit it holds, not a second one.
    assert dispatch(worker, django_capture_on_commit_callbacks) == unit
    assert sent[-1][1]["unit"] == unit.id
    assert WorkUnit.objects.filter(status="assigned").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_dispatchers_never_hand_out_a_unit_twice(tenant, sent) -> None:
    workers = [make_compute_worker(tenant) for _ in range(8)]
    job = make_compute_job(tenant)
    with (
        mock.patch("apps.jobs.tasks.units_dispatch.delay"),
        mock.patch("apps.jobs.tasks.job_reduce.delay"),
    ):
        job_services.job_start(job_id=job.id)
    barrier = threading.Barrier(6)

    def dispatcher() -> None:
        try:
            barrier.wait()
            compute.units_dispatch(tenant_id=tenant.id)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assigned = list(WorkUnit.objects.filter(job=job, status="assigned"))
    assert len(assigned) == 5  # every unit, each to one worker
    assert len({u.worker_id for u in assigned}) == 5
    holder = {u.id: Worker.objects.get(pk=u.worker_id).channel_name for u in assigned}
    assert {w.id for w in workers} >= {u.worker_id for u in assigned}
    assert all(channel == holder[frame["unit"]] for channel, frame in sent)


def test_a_result_is_recorded_once_and_accepted_again_when_it_repeats(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    unit = dispatch(worker, django_capture_on_commit_callbacks)
    result = right_result(unit)
    for _ in range(2):
        status = compute.unit_record_result(
            worker_id=worker.id, unit_id=unit.id, result=result, seconds=0.25
        )
        assert status == "accepted"
    unit.refresh_from_db()
    assert unit.status == "done" and unit.result == result and unit.seconds == 0.25


def test_a_result_for_a_unit_the_worker_does_not_hold_is_refused(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker, stranger = make_compute_worker(tenant), make_compute_worker(tenant)
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    unit = dispatch(worker, django_capture_on_commit_callbacks)
    for unit_id in (unit.id, unit.id + 1000):
        with pytest.raises(compute.UnitError) as caught:
            compute.unit_record_result(
                worker_id=stranger.id, unit_id=unit_id, result=right_result(unit), seconds=1.0
            )
        assert caught.value.code == "unknown_assignment"
    unit.refresh_from_db()
    assert unit.status == "assigned" and unit.worker == worker


def test_a_result_that_does_not_fit_the_unit_sends_the_unit_back_to_pending(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    unit = dispatch(worker, django_capture_on_commit_callbacks)
    wrong = {**right_result(unit), "stop": unit.stop + 1}
    with pytest.raises(compute.UnitError) as caught:
        compute.unit_record_result(worker_id=worker.id, unit_id=unit.id, result=wrong, seconds=1)
    assert caught.value.code == "bad_result"
    unit.refresh_from_db()
    assert (unit.status, unit.attempts, unit.worker, unit.error) == (
        "pending",
        1,
        None,
        "bad_result",
    )


def test_the_units_of_a_worker_that_does_not_come_back_return_to_pending(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    unit = dispatch(worker, django_capture_on_commit_callbacks)
    assert compute.worker_units_release(worker_id=worker.id) == 0  # still connected
    job_services.worker_disconnect(worker_id=worker.id, channel_name=worker.channel_name)
    with django_capture_on_commit_callbacks(execute=False):
        assert compute.worker_units_release(worker_id=worker.id) == 1
    unit.refresh_from_db()
    assert (unit.status, unit.attempts, unit.worker) == ("pending", 1, None)


def test_the_sweep_requeues_an_overdue_unit_and_hands_it_out_again(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    slow = make_compute_worker(tenant)
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    unit = dispatch(slow, django_capture_on_commit_callbacks)
    WorkUnit.objects.filter(pk=unit.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    Worker.objects.filter(pk=slow.pk).update(channel_name="")  # it stays away
    fresh = make_compute_worker(tenant)
    with django_capture_on_commit_callbacks(execute=False):
        assert compute.units_sweep() == {"requeued": 1}
    unit.refresh_from_db()
    assert unit.attempts == 1 and unit.error == "deadline"
    assert (unit.status, unit.worker) == ("assigned", fresh)  # the lowest pending index first


def test_a_unit_fails_its_job_after_the_policys_max_attempts(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    job = make_compute_job(tenant, policy={"unit_seconds": 2e-5, "max_attempts": 2})
    start(job, django_capture_on_commit_callbacks)
    for attempt in (1, 2):
        unit = dispatch(worker, django_capture_on_commit_callbacks)
        assert unit.index == 0
        with django_capture_on_commit_callbacks(execute=False):
            compute.unit_requeue(unit_id=unit.id, reason="deadline")
        unit.refresh_from_db()
        assert unit.attempts == attempt
    job.refresh_from_db()
    assert unit.status == "failed" and job.status == "failed"
    assert "unit 0 failed after 2 attempts" in job.error
    assert dispatch(worker, django_capture_on_commit_callbacks) is None


def test_the_last_result_reduces_the_job_to_its_answer(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    job = make_compute_job(tenant)
    start(job, django_capture_on_commit_callbacks)
    while (unit := dispatch(worker, django_capture_on_commit_callbacks)) is not None:
        with django_capture_on_commit_callbacks(execute=True):
            compute.unit_record_result(
                worker_id=worker.id, unit_id=unit.id, result=right_result(unit), seconds=0.1
            )
    job.refresh_from_db()
    assert job.status == "completed" and job.ended_at is not None
    assert (
        job.result
        == {"lo": 1, "hi": 100_000, "count": count_primes(1, 100_000)}
        == {
            "lo": 1,
            "hi": 100_000,
            "count": 9592,
        }
    )
    compute.job_reduce(job_id=job.id)  # a repeated task changes nothing
    assert Job.objects.get(pk=job.id).ended_at == job.ended_at


def test_a_paused_job_hands_out_no_units(tenant, django_capture_on_commit_callbacks, sent) -> None:
    worker = make_compute_worker(tenant)
    job = make_compute_job(tenant)
    start(job, django_capture_on_commit_callbacks)
    job_services.job_pause(job_id=job.id)
    assert dispatch(worker, django_capture_on_commit_callbacks) is None
    start(job, django_capture_on_commit_callbacks, execute=True)  # resumed: handed out again
    assert WorkUnit.objects.filter(worker=worker, status="assigned").count() == 1


def test_cancelling_a_compute_job_takes_its_units_back_from_the_workers(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    job = make_compute_job(tenant)
    start(job, django_capture_on_commit_callbacks)
    assert dispatch(worker, django_capture_on_commit_callbacks) is not None
    with django_capture_on_commit_callbacks(execute=False):
        job_services.job_cancel(job_id=job.id)
    assert not WorkUnit.objects.filter(worker=worker, status=WorkUnit.Status.ASSIGNED).exists()
    assert worker.id in compute.idle_workers(tenant.id)


def test_a_worker_holding_a_unit_is_not_selected_for_a_training_round(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    from apps.rounds.selectors import eligible_workers
    from apps.testing import make_job

    worker = make_compute_worker(tenant, kernels=["primes", "softmax"])
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    training = make_job(tenant)
    assert worker.id in [w.id for w in eligible_workers(training)]
    dispatch(worker, django_capture_on_commit_callbacks)
    assert worker.id not in [w.id for w in eligible_workers(training)]
