"""Work-unit transitions of compute jobs: split, dispatch, result, requeue and reduce.

Each transition is one transaction. Lock order, wherever two are taken: the job, then the
worker, then its units. A unit is handed out by a conditional UPDATE from pending, so two
dispatchers never hand out the same unit; a worker holds at most one unit at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.jobs import gateway
from apps.jobs.models import Job, Worker, WorkUnit
from apps.rounds.selectors import busy_worker_ids
from kernels.compute import ComputeKernel, get_compute_kernel

log = logging.getLogger(__name__)

ACCEPTED = "accepted"


class UnitError(Exception):
    """A worker referred to a unit it may not act on; ``code`` is a wire error code."""

    def __init__(self, code: str, message: str, unit_id: int) -> None:
        super().__init__(message)
        self.code, self.message, self.unit_id = code, message, unit_id


def _tasks():  # noqa: ANN202 - tasks import this module, so import them late
    from apps.jobs import tasks

    return tasks


def job_units_start(*, job: Job, first_start: bool) -> None:
    """With the job locked and just set running: cut its space into units on the first start
    (a fixed target cost of ``unit_seconds``), then hand them to the tenant's idle workers."""
    if first_start and not job.units.exists():
        spec = get_compute_kernel(job.kernel)
        units = spec.split(job.config, target_cost=job.policy["unit_seconds"])
        WorkUnit.objects.bulk_create(
            WorkUnit(job=job, index=i, start=u["start"], stop=u["stop"], cost=u["cost"])
            for i, u in enumerate(units)
        )
    transaction.on_commit(lambda: _tasks().units_dispatch.delay(job.tenant_id))
    transaction.on_commit(lambda: _tasks().job_reduce.delay(job.id))  # a resumed job may be done


def unit_frame(unit: WorkUnit) -> dict:
    job = unit.job
    return {
        "type": "unit",
        "unit": unit.id,
        "job": job.id,
        "kernel": job.kernel,
        "config": job.config,
        "spec": {"start": unit.start, "stop": unit.stop},
        "deadline": unit.deadline.isoformat(),
    }


def idle_workers(tenant_id: int) -> list[int]:
    """Ids of the tenant's connected, recently seen workers holding no unit and no assignment."""
    fresh = timezone.now() - timedelta(seconds=settings.CCGSC_WORKER_TIMEOUT_S)
    return list(
        Worker.objects.filter(tenant_id=tenant_id, is_active=True, last_seen__gte=fresh)
        .exclude(channel_name="")
        .exclude(units__status=WorkUnit.Status.ASSIGNED)
        .exclude(id__in=busy_worker_ids())
        .values_list("id", flat=True)
    )


def units_dispatch(*, tenant_id: int) -> int:
    """Give each idle worker of the tenant a pending unit it can run; returns units handed out."""
    return sum(unit_dispatch(worker_id=worker_id) for worker_id in idle_workers(tenant_id))


@transaction.atomic
def unit_dispatch(*, worker_id: int) -> int:
    """Send the worker the unit it holds again, or claim the next pending unit for it.

    Returns 1 when a unit was newly claimed, else 0. The worker row is locked (skipping it when
    another dispatcher holds it) so a worker never gets two units; the unit is claimed by a
    conditional UPDATE from pending.
    """
    worker = Worker.objects.select_for_update(skip_locked=True).filter(pk=worker_id).first()
    if worker is None or not worker.channel_name or not worker.is_active:
        return 0
    held = WorkUnit.objects.filter(worker=worker, status=WorkUnit.Status.ASSIGNED)
    held = held.select_related("job").first()
    if held is not None:
        frame = unit_frame(held)
        transaction.on_commit(lambda: gateway.send_frames([(worker.channel_name, frame)]))
        return 0
    unit = _claim(worker)
    if unit is None:
        return 0
    frame = unit_frame(unit)
    transaction.on_commit(lambda: gateway.send_frames([(worker.channel_name, frame)]))
    return 1


def _claim(worker: Worker) -> WorkUnit | None:
    kernels = worker.capabilities.get("kernels", [])
    candidates = (
        WorkUnit.objects.filter(
            status=WorkUnit.Status.PENDING,
            job__tenant_id=worker.tenant_id,
            job__status=Job.Status.RUNNING,
            job__type=Job.Type.COMPUTE,
            job__kernel__in=kernels,
        )
        .order_by("job_id", "index")
        .values_list("id", "job__policy")[:8]
    )
    now = timezone.now()
    for unit_id, policy in candidates:
        claimed = WorkUnit.objects.filter(pk=unit_id, status=WorkUnit.Status.PENDING).update(
            status=WorkUnit.Status.ASSIGNED,
            worker=worker,
            assigned_at=now,
            deadline=now + timedelta(seconds=policy["unit_deadline_s"]),
        )
        if claimed:
            return WorkUnit.objects.select_related("job").get(pk=unit_id)
    return None


def unit_record_result(*, worker_id: int, unit_id: int, result: Any, seconds: float) -> str:
    """assigned → done with the worker's result; "accepted" again when the result repeats.

    A unit not assigned to this worker raises UnitError("unknown_assignment"); a result that
    does not fit the kernel returns the unit to pending (that is committed) and raises
    UnitError("bad_result").
    """
    status = _record_result(worker_id=worker_id, unit_id=unit_id, result=result, seconds=seconds)
    if status == BAD_RESULT:
        raise UnitError(BAD_RESULT, "the result does not fit the unit or its kernel", unit_id)
    return status


BAD_RESULT = "bad_result"


@transaction.atomic
def _record_result(*, worker_id: int, unit_id: int, result: Any, seconds: float) -> str:
    job_id = WorkUnit.objects.filter(pk=unit_id).values_list("job_id", flat=True).first()
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    unit = WorkUnit.objects.select_for_update().filter(pk=unit_id, worker_id=worker_id).first()
    if job is None or unit is None or unit.status not in _HELD:
        raise UnitError("unknown_assignment", f"no unit {unit_id} for you", unit_id)
    if unit.status == WorkUnit.Status.DONE:
        return ACCEPTED  # a repeated result whose acknowledgement was lost
    spec = get_compute_kernel(job.kernel)
    if not _fits(spec, unit, result):
        _requeue(job, unit, BAD_RESULT)
        return BAD_RESULT
    unit.status, unit.result, unit.error = WorkUnit.Status.DONE, dict(result), ""
    unit.seconds, unit.finished_at = max(float(seconds), 0.0), timezone.now()
    unit.save(update_fields=["status", "result", "error", "seconds", "finished_at"])
    if job.status == Job.Status.RUNNING and not job.units.exclude(status=_DONE).exists():
        transaction.on_commit(lambda: _tasks().job_reduce.delay(job.id))
    return ACCEPTED


_DONE = WorkUnit.Status.DONE
_HELD = {WorkUnit.Status.ASSIGNED, WorkUnit.Status.DONE}


def _fits(spec: ComputeKernel, unit: WorkUnit, result: Any) -> bool:
    """Whether a result has the kernel's fields and covers exactly the unit's range."""
    if not isinstance(result, Mapping):
        return False
    return spec.agree(result, {**result, "start": unit.start, "stop": unit.stop}, {})


def _requeue(job: Job, unit: WorkUnit, reason: str) -> None:
    """With the job and unit locked: the attempt ended without a result. The unit goes back
    to pending, or fails (and fails its job) after the policy's max_attempts."""
    unit.attempts += 1
    unit.error, unit.worker, unit.deadline = reason, None, None
    if unit.attempts >= job.policy["max_attempts"]:
        unit.status, unit.finished_at = WorkUnit.Status.FAILED, timezone.now()
    else:
        unit.status = WorkUnit.Status.PENDING
    unit.save(update_fields=["attempts", "error", "worker", "deadline", "status", "finished_at"])
    if unit.status == WorkUnit.Status.FAILED and job.status in _ACTIVE:
        from apps.rounds.services import job_finish

        message = f"unit {unit.index} failed after {unit.attempts} attempts ({reason})"
        job_finish(job, Job.Status.FAILED, message)
    else:
        transaction.on_commit(lambda: _tasks().units_dispatch.delay(job.tenant_id))


_ACTIVE = {Job.Status.RUNNING, Job.Status.PAUSED}


@transaction.atomic
def unit_requeue(*, unit_id: int, reason: str) -> None:
    """An assigned unit whose worker is gone or whose deadline passed goes back to pending."""
    job_id = WorkUnit.objects.filter(pk=unit_id).values_list("job_id", flat=True).first()
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    unit = WorkUnit.objects.select_for_update().filter(pk=unit_id).first()
    if job is None or unit is None or unit.status != WorkUnit.Status.ASSIGNED:
        return
    _requeue(job, unit, reason)


def worker_units_release(*, worker_id: int) -> int:
    """Requeue the units of a worker that did not come back within the reconnect grace."""
    if Worker.objects.filter(pk=worker_id).exclude(channel_name="").exists():
        return 0  # it reconnected
    held = WorkUnit.objects.filter(worker_id=worker_id, status=WorkUnit.Status.ASSIGNED)
    ids = list(held.values_list("id", flat=True))
    for unit_id in ids:
        unit_requeue(unit_id=unit_id, reason="disconnected")
    return len(ids)


def job_reduce(*, job_id: int) -> None:
    """running → completed: reduce the units' results with the kernel and store the job's
    result. The job row is locked while it is read and written, so a repeat does nothing."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.type != Job.Type.COMPUTE or job.status != Job.Status.RUNNING:
            return
        if job.units.exclude(status=_DONE).exists() or not job.units.exists():
            return
        from apps.rounds.services import job_finish

        results = job.units.values_list("result", flat=True)
        try:
            job.result = get_compute_kernel(job.kernel).reduce(results, job.config)
        except ValueError as exc:
            job_finish(job, Job.Status.FAILED, f"reduce failed: {exc}")
            return
        job.save(update_fields=["result"])
        job_finish(job, Job.Status.COMPLETED)


def units_sweep() -> dict:
    """Periodic repair: requeue overdue units and those of workers gone past the grace, hand
    out pending units, and reduce finished jobs whose reduce was lost."""
    now = timezone.now()
    gone = now - timedelta(seconds=settings.CCGSC_RECONNECT_GRACE_S)
    stuck = WorkUnit.objects.filter(status=WorkUnit.Status.ASSIGNED).filter(
        Q(deadline__lt=now) | Q(worker__channel_name="", worker__last_seen__lt=gone)
    )
    requeued = 0
    for unit_id, deadline in stuck.values_list("id", "deadline"):
        unit_requeue(unit_id=unit_id, reason="deadline" if deadline < now else "disconnected")
        requeued += 1
    running = Job.objects.filter(type=Job.Type.COMPUTE, status=Job.Status.RUNNING)
    for tenant_id in (
        running.filter(units__status=WorkUnit.Status.PENDING)
        .values_list("tenant_id", flat=True)
        .distinct()
    ):
        units_dispatch(tenant_id=tenant_id)
    finished = running.exclude(units__status__in=[*_PENDING_OR_HELD, WorkUnit.Status.FAILED])
    for job_id in finished.filter(units__isnull=False).values_list("id", flat=True).distinct():
        job_reduce(job_id=job_id)
    return {"requeued": requeued}


_PENDING_OR_HELD = [WorkUnit.Status.PENDING, WorkUnit.Status.ASSIGNED]
