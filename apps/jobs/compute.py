"""Work-unit transitions of compute jobs: cut, replica dispatch, result, validation, reduce.

A job's space is cut lazily: when a worker asks for work and no unit cut so far wants a
replica, the next unit is cut from where the last one stopped, sized so that it takes that
worker about the policy's ``unit_seconds`` at its measured speed (apps.jobs.sizing). The units
in the database are the whole of the job's progress, so a restart resumes where it stopped.

Each transition is one transaction. A result (or a timeout) locks the job, then the unit,
then the workers it judges in id order; a dispatch locks the worker, then claims a unit by a
conditional UPDATE of its ``in_play`` counter (so two dispatchers never over-assign a unit) or
inserts a new unit. Results take the job row FOR NO KEY UPDATE, which does not conflict with
the key-share lock an insert of a unit takes on its job, so a dispatch holding a worker never
waits for a result that waits for that worker. A worker holds at most as many replicas as
the slots it runs (``capabilities.slots``, default 1) and never two replicas of one unit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from apps.jobs import gateway, sizing, validation
from apps.jobs.models import Job, UnitReplica, Worker, WorkUnit
from apps.rounds.selectors import busy_worker_ids
from kernels.compute import MAX_UNITS, ComputeKernel, get_compute_kernel

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
    """With the job locked and just set running (or resumed): hand work to the tenant's idle
    workers. The space is cut lazily, one unit per worker as it asks (``unit_dispatch``)."""
    transaction.on_commit(lambda: _tasks().units_dispatch.delay(job.tenant_id))
    transaction.on_commit(lambda: _tasks().job_reduce.delay(job.id))  # a resumed job may be done


def unit_frame(replica: UnitReplica) -> dict:
    unit, job = replica.unit, replica.unit.job
    return {
        "type": "unit",
        "unit": unit.id,
        "job": job.id,
        "kernel": job.kernel,
        "config": job.config,
        "spec": {"start": unit.start, "stop": unit.stop},
        "deadline": replica.deadline.isoformat(),
    }


_OUT = UnitReplica.Status.ASSIGNED


def slots_of(worker: Worker) -> int:
    """How many units the worker runs at once (``capabilities.slots``, default 1)."""
    return worker.capabilities.get("slots", 1)


def idle_workers(tenant_id: int) -> list[int]:
    """Ids of the tenant's connected, recently seen workers in no training round with a free
    slot (fewer replicas held than the slots they run)."""
    fresh = timezone.now() - timedelta(seconds=settings.CCGSC_WORKER_TIMEOUT_S)
    rows = (
        Worker.objects.filter(tenant_id=tenant_id, is_active=True, last_seen__gte=fresh)
        .exclude(channel_name="")
        .exclude(id__in=busy_worker_ids())
        .annotate(held=Count("replicas", filter=Q(replicas__status=_OUT)))
        .values_list("id", "capabilities", "held")
    )
    return [pk for pk, capabilities, held in rows if held < capabilities.get("slots", 1)]


def units_dispatch(*, tenant_id: int) -> int:
    """Fill each idle worker's free slots with replicas it can run; returns replicas handed
    out."""
    return sum(
        unit_dispatch(worker_id=worker_id, resend=False) for worker_id in idle_workers(tenant_id)
    )


def unit_dispatch(*, worker_id: int, resend: bool = True) -> int:
    """Send the worker (through the channel layer) new replicas for its free slots, and with
    ``resend`` the replicas it holds again; returns the replicas newly handed out."""
    replicas, fresh = _dispatch(worker_id, resend=resend)
    if replicas:
        channel = replicas[0].worker.channel_name
        frames = [(channel, unit_frame(replica)) for replica in replicas]
        transaction.on_commit(lambda: gateway.send_frames(frames))
    return fresh


def may_have_work(worker: Worker) -> bool:
    """Whether a dispatch could find the worker anything (it holds a replica, or its tenant
    runs a compute job of a kernel it runs): two cheap reads, no lock, so that a hello to a
    tenant without compute work costs no transaction."""
    held = UnitReplica.objects.filter(worker=worker, status=_OUT)
    return held.exists() or _runnable_jobs(worker).exists()


def next_unit_frames(*, worker_id: int, resend: bool) -> list[dict]:
    """The unit frames to send the worker now on its own socket: new replicas for its free
    slots, and with ``resend`` (after a reconnect) the replicas it holds."""
    replicas, _ = _dispatch(worker_id, resend=resend)
    return [unit_frame(replica) for replica in replicas]


@transaction.atomic
def _dispatch(worker_id: int, *, resend: bool) -> tuple[list[UnitReplica], int]:
    """(the replicas to send the worker, how many of them are new), committed.

    With the worker row locked (skipped when another dispatcher holds it, so two never fill
    one worker's slots at once): each free slot gets a replica of a unit cut already that
    wants one (`_claim`), or else the next unit of a job with space left, cut for this
    worker (`_cut`).
    """
    worker = Worker.objects.select_for_update(skip_locked=True).filter(pk=worker_id).first()
    if worker is None or not worker.channel_name or not worker.is_active:
        return [], 0
    held = UnitReplica.objects.filter(worker=worker, status=_OUT)
    held = list(held.select_related("unit__job", "worker"))
    free = slots_of(worker) - len(held)
    jobs = list(_runnable_jobs(worker).order_by("id")) if free > 0 else []
    new: list[UnitReplica] = []
    while jobs and len(new) < free:
        replica = _claim(worker, jobs)
        if replica is None:
            replica = next(filter(None, (_cut(worker, job) for job in jobs)), None)
        if replica is None:  # the space ran out while others cut it: their units may want more
            replica = _claim(worker, jobs)
        if replica is None:
            break
        new.append(replica)
    return (held if resend else []) + new, len(new)


_OPEN = [WorkUnit.Status.ASSIGNED, WorkUnit.Status.RETURNED, WorkUnit.Status.DISPUTED]


def _runnable_jobs(worker: Worker):  # noqa: ANN202 - a queryset of Job
    return Job.objects.filter(
        tenant_id=worker.tenant_id,
        status=Job.Status.RUNNING,
        type=Job.Type.COMPUTE,
        kernel__in=worker.capabilities.get("kernels", []),
    )


def _claim(worker: Worker, jobs: list[Job]) -> UnitReplica | None:
    """Claim a replica of a unit of one of the ``jobs``: a pending unit (deciding its
    replication, see validation.replication) or an open unit with fewer replicas in play than
    it wants, each by a conditional UPDATE."""
    by_id = {job.id: job for job in jobs}
    candidates = (
        WorkUnit.objects.filter(
            Q(status=WorkUnit.Status.PENDING) | Q(status__in=_OPEN, in_play__lt=F("wanted")),
            job_id__in=list(by_id),
        )
        .exclude(replicas__worker=worker)
        .order_by("job_id", "index")
        .values_list("id", "job_id", "index", "status")[:8]
    )
    now = timezone.now()
    for unit_id, job_id, index, status in candidates:
        job = by_id[job_id]
        if status == WorkUnit.Status.PENDING:
            wanted, quorum = _replication(worker, job_id, index, job.policy)
            claimed = WorkUnit.objects.filter(pk=unit_id, status=WorkUnit.Status.PENDING).update(
                status=WorkUnit.Status.ASSIGNED,
                wanted=wanted,
                quorum=quorum,
                in_play=1,
                assigned_at=now,
            )
        else:
            claimed = WorkUnit.objects.filter(
                pk=unit_id, status__in=_OPEN, in_play__lt=F("wanted")
            ).update(in_play=F("in_play") + 1)
        if claimed:
            unit = WorkUnit.objects.get(pk=unit_id)
            unit.job = job
            return _new_replica(worker, unit, cost=unit.cost, kernel=job.kernel, policy=job.policy)
    return None


def _replication(worker: Worker, job_id: int, index: int, policy: dict) -> tuple[int, int]:
    spot = validation.is_spot_checked(job_id, index, policy["spot_check_rate"])
    return validation.replication(trust=worker.trust, spot_checked=spot, policy=policy)


def _new_replica(
    worker: Worker, unit: WorkUnit, *, cost: float, kernel: str, policy: dict
) -> UnitReplica:
    speed = sizing.speed_of(worker.compute_speeds, kernel)
    seconds = sizing.replica_deadline_s(policy=policy, cost=cost, speed=speed)
    deadline = timezone.now() + timedelta(seconds=seconds)
    return UnitReplica.objects.create(unit=unit, worker=worker, deadline=deadline)


def _cut_to(job_id: int, kernel: str, config: dict) -> tuple[int | None, int]:
    """Where the next unit of a job starts (None when the whole space is cut) and its index."""
    last = WorkUnit.objects.filter(job_id=job_id).order_by("-index").values("stop", "index")
    last = last.first()
    start, stop = get_compute_kernel(kernel).space(config)
    at, index = (last["stop"], last["index"] + 1) if last else (start, 0)
    return (at if at < stop else None), index


def space_is_cut(job: Job) -> bool:
    """Whether a compute job's units cover its whole space."""
    return _cut_to(job.id, job.kernel, job.config)[0] is None


class _Stopped(Exception):
    """The job stopped running while a unit was being cut for it."""


CUT_RETRIES = 20


def _cut(worker: Worker, job: Job) -> UnitReplica | None:
    """With the worker locked: cut the job's next unit, sized to the worker's measured speed,
    and give the worker its first replica; None when the job has no space left or stopped.

    No lock on the job is taken (a worker is locked, and results lock the job before
    workers): concurrent cutters of one job race for the next ``index``, which the unique
    (job, index) constraint gives to one of them; the others read the new end and cut again.
    A unit cut while the job was being stopped is rolled back: the status is read again
    after the insert, which waits for a stop that holds the job row.
    """
    spec = get_compute_kernel(job.kernel)
    speed = sizing.speed_of(worker.compute_speeds, job.kernel)
    for _ in range(CUT_RETRIES):
        at, index = _cut_to(job.id, job.kernel, job.config)
        if at is None:
            return None
        target = sizing.target_cost(
            unit_seconds=job.policy["unit_seconds"],
            speed=speed,
            remaining_cost=spec.cost(job.config, at, spec.space(job.config)[1]),
            units_left=MAX_UNITS - index,
        )
        cut = spec.next_unit(job.config, at, target_cost=target)
        wanted, quorum = _replication(worker, job.id, index, job.policy)
        try:
            with transaction.atomic():
                unit = WorkUnit.objects.create(
                    job=job,
                    index=index,
                    start=cut["start"],
                    stop=cut["stop"],
                    cost=cut["cost"],
                    status=WorkUnit.Status.ASSIGNED,
                    wanted=wanted,
                    quorum=quorum,
                    in_play=1,
                    assigned_at=timezone.now(),
                )
                if not Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).exists():
                    raise _Stopped
        except IntegrityError:
            continue  # another dispatcher cut this index first
        except _Stopped:
            return None
        return _new_replica(worker, unit, cost=unit.cost, kernel=job.kernel, policy=job.policy)
    return None


def unit_result_and_next(
    *, worker_id: int, unit_id: int, result: Any, seconds: float
) -> tuple[str, list[dict]]:
    """``unit_record_result``, then ``next_unit_frames`` for the slot it freed: what a
    worker's socket answers a result with, in two transactions but one trip to the database
    thread."""
    status = unit_record_result(
        worker_id=worker_id, unit_id=unit_id, result=result, seconds=seconds
    )
    return status, next_unit_frames(worker_id=worker_id, resend=False)


def unit_record_result(*, worker_id: int, unit_id: int, result: Any, seconds: float) -> str:
    """The worker's replica: assigned → returned, then the unit is validated if it can be;
    "accepted" again when the result repeats.

    A unit the worker holds no replica of raises UnitError("unknown_assignment"); a result
    that does not fit the kernel fails the replica (that is committed) and raises
    UnitError("bad_result").
    """
    status = _record_result(worker_id=worker_id, unit_id=unit_id, result=result, seconds=seconds)
    if status == BAD_RESULT:
        raise UnitError(BAD_RESULT, "the result does not fit the unit or its kernel", unit_id)
    return status


BAD_RESULT = "bad_result"
_ANSWERED = {
    UnitReplica.Status.RETURNED,
    UnitReplica.Status.VALID,
    UnitReplica.Status.REJECTED,
}


@transaction.atomic
def _record_result(*, worker_id: int, unit_id: int, result: Any, seconds: float) -> str:
    job = Job.objects.select_for_update(no_key=True, of=("self",)).filter(units__id=unit_id)
    job = job.first()
    unit = WorkUnit.objects.select_for_update().filter(pk=unit_id).first()
    replica = UnitReplica.objects.filter(unit_id=unit_id, worker_id=worker_id)
    replica = replica.select_for_update().first()
    if job is None or unit is None or replica is None:
        raise UnitError("unknown_assignment", f"no unit {unit_id} for you", unit_id)
    if replica.status in _ANSWERED:
        return ACCEPTED  # a repeated result whose acknowledgement was lost
    if replica.status != _OUT:
        raise UnitError("unknown_assignment", f"no unit {unit_id} for you", unit_id)
    spec = get_compute_kernel(job.kernel)
    if not _fits(spec, unit, result):
        _replica_end(job, unit, replica, UnitReplica.Status.FAILED, BAD_RESULT)
        return BAD_RESULT
    replica.status, replica.result = UnitReplica.Status.RETURNED, dict(result)
    replica.seconds, replica.returned_at = max(float(seconds), 0.0), timezone.now()
    replica.save(update_fields=["status", "result", "seconds", "returned_at"])
    if unit.status in _OPEN:
        _validate(job, unit, spec)
    elif unit.status in _SETTLED:
        _judge([replica], canonical=unit.result, spec=spec, job=job, cost=unit.cost, checked=True)
    # Last: any worker rows judged above were locked in id order, this one among them.
    _measure(worker_id, job.kernel, cost=unit.cost, seconds=replica.seconds)
    return ACCEPTED


_SETTLED = {WorkUnit.Status.VALIDATED, WorkUnit.Status.DONE}


def _validate(job: Job, unit: WorkUnit, spec: ComputeKernel) -> None:
    """With the job and unit locked: validate the unit if ``quorum`` of its returned results
    agree pairwise, else mark it disputed and want another replica (failing it, and its job,
    beyond ``max_replicas``)."""
    returned = list(unit.replicas.filter(status=UnitReplica.Status.RETURNED).order_by("id"))
    results = [r.result for r in returned]
    group = validation.agreeing_group(results, lambda a, b: spec.agree(a, b, job.config))
    if len(group) >= unit.quorum:
        canonical = returned[group[0]]
        unit.status, unit.result = WorkUnit.Status.VALIDATED, canonical.result
        unit.worker_id, unit.seconds = canonical.worker_id, canonical.seconds
        unit.finished_at = timezone.now()
        unit.save(update_fields=["status", "result", "worker", "seconds", "finished_at"])
        checked = unit.quorum > 1 or len(returned) > 1
        _judge(returned, canonical=unit.result, spec=spec, job=job, cost=unit.cost, checked=checked)
        if not job.units.exclude(status__in=_SETTLED).exists() and space_is_cut(job):
            transaction.on_commit(lambda: _tasks().job_reduce.delay(job.id))
        return
    disputed = len(group) < len(returned)
    needed = validation.results_still_needed(len(returned), len(group), unit.quorum)
    if needed > job.policy["max_replicas"]:
        _unit_fail(job, unit, f"results disagree after {len(returned)} replicas", "disputed")
        return
    unit.status = WorkUnit.Status.DISPUTED if disputed else WorkUnit.Status.RETURNED
    unit.wanted = max(unit.wanted, needed)
    unit.save(update_fields=["status", "wanted"])
    if unit.in_play < unit.wanted:
        transaction.on_commit(lambda: _tasks().units_dispatch.delay(job.tenant_id))


def _judge(
    replicas: list[UnitReplica],
    *,
    canonical: Any,
    spec: ComputeKernel,
    job: Job,
    cost: float,
    checked: bool,
) -> None:
    """Replicas that agree with the canonical result are valid and credited with the unit's
    cost; the others are rejected. Trust moves only when another result ``checked`` these
    (a trusted worker's result accepted alone earns credit but no trust)."""
    for replica in sorted(replicas, key=lambda r: r.worker_id):  # a fixed lock order
        agreed = spec.agree(replica.result, canonical, job.config)
        replica.status = UnitReplica.Status.VALID if agreed else UnitReplica.Status.REJECTED
        replica.save(update_fields=["status"])
        scale, shift = validation.trust_step(agreed=agreed) if checked or not agreed else (1, 0)
        Worker.objects.filter(pk=replica.worker_id).update(
            credit=F("credit") + (cost if agreed else 0.0),
            trust=F("trust") * scale + shift,
        )


def _fits(spec: ComputeKernel, unit: WorkUnit, result: Any) -> bool:
    """Whether a result has the kernel's fields and covers exactly the unit's range."""
    if not isinstance(result, Mapping):
        return False
    return spec.agree(result, {**result, "start": unit.start, "stop": unit.stop}, {})


def _measure(worker_id: int, kernel: str, *, cost: float, seconds: float | None) -> None:
    """Fold a result's speed (or, with ``seconds`` None, a missed deadline) into the worker's
    measured speeds, with the worker row locked (after the job and unit, as everywhere)."""
    if seconds is not None and not sizing.is_timed(seconds):
        return  # too short to measure anything
    worker = Worker.objects.select_for_update().get(pk=worker_id)
    if seconds is None:
        speeds = sizing.speeds_after_timeout(worker.compute_speeds, kernel)
    else:
        speeds = sizing.speeds_after_result(
            worker.compute_speeds, kernel, cost=cost, seconds=seconds
        )
    if speeds != worker.compute_speeds:
        worker.compute_speeds = speeds
        worker.save(update_fields=["compute_speeds"])


def _replica_end(job: Job, unit: WorkUnit, replica: UnitReplica, status: str, reason: str) -> None:
    """With the job and unit locked: a replica ended without a result. Its place goes back
    to the unit (which is pending again when no replica is left in play), or the unit fails
    (and fails its job) after the policy's max_attempts."""
    replica.status, replica.error = status, reason
    replica.save(update_fields=["status", "error"])
    if unit.status not in {WorkUnit.Status.PENDING, *_OPEN}:
        return  # the unit was settled already; it needs nothing more
    unit.attempts += 1
    unit.error, unit.in_play = reason, max(unit.in_play - 1, 0)
    if unit.attempts >= job.policy["max_attempts"]:
        _unit_fail(job, unit, f"failed after {unit.attempts} attempts ({reason})", reason)
        return
    if unit.status == WorkUnit.Status.ASSIGNED and unit.in_play == 0:
        unit.status = WorkUnit.Status.PENDING
    unit.save(update_fields=["attempts", "error", "in_play", "status"])
    transaction.on_commit(lambda: _tasks().units_dispatch.delay(job.tenant_id))


def _unit_fail(job: Job, unit: WorkUnit, message: str, reason: str) -> None:
    unit.status, unit.error, unit.finished_at = WorkUnit.Status.FAILED, reason, timezone.now()
    unit.save(update_fields=["attempts", "error", "in_play", "status", "wanted", "finished_at"])
    if job.status in _ACTIVE:
        from apps.rounds.services import job_finish

        job_finish(job, Job.Status.FAILED, f"unit {unit.index} {message}")


_ACTIVE = {Job.Status.RUNNING, Job.Status.PAUSED}


@transaction.atomic
def replica_requeue(*, replica_id: int, reason: str) -> None:
    """An assigned replica whose worker is gone or whose deadline passed times out; its unit
    wants another."""
    found = UnitReplica.objects.filter(pk=replica_id).values_list("unit__job_id", "unit_id")
    job_id, unit_id = found.first() or (None, None)
    job = Job.objects.select_for_update(no_key=True).filter(pk=job_id).first()
    unit = WorkUnit.objects.select_for_update().filter(pk=unit_id).first()
    replica = UnitReplica.objects.select_for_update().filter(pk=replica_id).first()
    if job is None or unit is None or replica is None or replica.status != _OUT:
        return
    _replica_end(job, unit, replica, UnitReplica.Status.TIMEOUT, reason)
    if reason == "deadline":
        _measure(replica.worker_id, job.kernel, cost=unit.cost, seconds=None)


def job_replicas_release(job: Job, reason: str) -> None:
    """With the job locked as it ends: the replicas it still had out are taken back."""
    out = UnitReplica.objects.filter(unit__job=job, status=_OUT)
    out.update(status=UnitReplica.Status.FAILED, error=reason)
    for unit in job.units.filter(status__in=_OPEN):
        in_play = unit.replicas.filter(status__in=[_OUT, UnitReplica.Status.RETURNED]).count()
        status = WorkUnit.Status.PENDING if unit.status == WorkUnit.Status.ASSIGNED else unit.status
        WorkUnit.objects.filter(pk=unit.pk).update(in_play=in_play, status=status)


def worker_units_release(*, worker_id: int) -> int:
    """Time out the replicas of a worker that did not come back within the reconnect grace."""
    if Worker.objects.filter(pk=worker_id).exclude(channel_name="").exists():
        return 0  # it reconnected
    held = UnitReplica.objects.filter(worker_id=worker_id, status=_OUT)
    ids = list(held.values_list("id", flat=True))
    for replica_id in ids:
        replica_requeue(replica_id=replica_id, reason="disconnected")
    return len(ids)


def job_reduce(*, job_id: int) -> None:
    """running → completed: reduce the units' canonical results with the kernel and store the
    job's result; the units are then done. The job row is locked while it is read and written,
    so a repeat does nothing."""
    with transaction.atomic():
        job = Job.objects.select_for_update(no_key=True).filter(pk=job_id).first()
        if job is None or job.type != Job.Type.COMPUTE or job.status != Job.Status.RUNNING:
            return
        if job.units.exclude(status__in=_SETTLED).exists() or not space_is_cut(job):
            return
        from apps.rounds.services import job_finish

        results = job.units.values_list("result", flat=True)
        try:
            job.result = get_compute_kernel(job.kernel).reduce(results, job.config)
        except ValueError as exc:
            job_finish(job, Job.Status.FAILED, f"reduce failed: {exc}")
            return
        job.save(update_fields=["result"])
        job.units.filter(status=WorkUnit.Status.VALIDATED).update(status=WorkUnit.Status.DONE)
        job_finish(job, Job.Status.COMPLETED)


def units_sweep() -> dict:
    """Periodic repair: time out overdue replicas and those of workers gone past the grace,
    hand out units that want replicas, and reduce finished jobs whose reduce was lost."""
    now = timezone.now()
    gone = now - timedelta(seconds=settings.CCGSC_RECONNECT_GRACE_S)
    stuck = UnitReplica.objects.filter(status=_OUT).filter(
        Q(deadline__lt=now) | Q(worker__channel_name="", worker__last_seen__lt=gone)
    )
    requeued = 0
    for replica_id, deadline in stuck.values_list("id", "deadline"):
        replica_requeue(
            replica_id=replica_id, reason="deadline" if deadline < now else "disconnected"
        )
        requeued += 1
    running = Job.objects.filter(type=Job.Type.COMPUTE, status=Job.Status.RUNNING)
    for tenant_id in running.values_list("tenant_id", flat=True).distinct():
        units_dispatch(tenant_id=tenant_id)
    finished = running.exclude(units__status__in=_UNSETTLED)
    for job_id in finished.filter(units__isnull=False).values_list("id", flat=True).distinct():
        job_reduce(job_id=job_id)
    return {"requeued": requeued}


_UNSETTLED = [WorkUnit.Status.PENDING, *_OPEN, WorkUnit.Status.FAILED]
