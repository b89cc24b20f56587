"""Round and assignment transitions: one transaction each, idempotent when a message repeats.

Lock order, wherever two are taken: the round, then its assignments.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.jobs import compute, gateway
from apps.jobs.models import Job, Worker
from apps.registry.models import ModelVersion
from apps.registry.services import model_version_create, model_weights
from apps.rounds import strategies
from apps.rounds.models import Assignment, Round
from apps.rounds.policy import selection_size
from apps.rounds.selectors import eligible_workers
from ccgsc_client import wire
from kernels import get_kernel, load_dataset

log = logging.getLogger(__name__)


class AssignmentError(Exception):
    """A worker referred to an assignment it may not act on; ``code`` is a wire error code."""

    def __init__(self, code: str, message: str, assignment_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.assignment_id = assignment_id


def _tasks():  # noqa: ANN202 - tasks import this module, so import them late
    from apps.rounds import tasks

    return tasks


def round_open(*, job: Job, base_model: ModelVersion, number: int, attempt: int = 1) -> Round:
    fl_round = Round.objects.create(
        job=job,
        number=number,
        attempt=attempt,
        base_model=base_model,
        cohort_target=job.policy["cohort_size"],
        min_reports=job.policy["min_reports"],
    )
    transaction.on_commit(lambda: _tasks().round_select.delay(fl_round.id))
    transaction.on_commit(lambda: gateway.notify_director(job.id))
    return fl_round


@transaction.atomic
def round_select(*, round_id: int) -> Round | None:
    """Offer the round to a cohort of eligible workers once enough of them are connected."""
    fl_round = Round.objects.select_for_update().filter(pk=round_id).first()
    if fl_round is None or fl_round.status != Round.Status.SELECTING:
        return fl_round
    job = Job.objects.get(pk=fl_round.job_id)
    if job.status != Job.Status.RUNNING:
        return fl_round
    policy = job.policy
    candidates = eligible_workers(job)
    waited = (timezone.now() - fl_round.started_at).total_seconds()
    wanted = selection_size(policy, 10**9)
    if len(candidates) < wanted and (
        len(candidates) < fl_round.min_reports or waited < policy["selection_timeout_s"]
    ):
        return fl_round
    chosen = random.sample(candidates, selection_size(policy, len(candidates)))
    assignments = Assignment.objects.bulk_create(
        [Assignment(fl_round=fl_round, worker=worker) for worker in chosen]
    )
    fl_round.status = Round.Status.TRAINING
    fl_round.selected = len(chosen)
    fl_round.deadline = timezone.now() + timedelta(seconds=policy["round_deadline_s"])
    fl_round.save(update_fields=["status", "selected", "deadline"])
    frames = [
        (worker.channel_name, assign_frame(job, fl_round, assignment))
        for worker, assignment in zip(chosen, assignments, strict=True)
    ]
    contexts = [upload_context(job, fl_round, assignment) for assignment in assignments]
    transaction.on_commit(lambda: gateway.send_frames(frames, contexts))
    transaction.on_commit(
        lambda: _tasks().round_check_deadline.apply_async(
            (fl_round.id,), countdown=policy["round_deadline_s"] + 0.5
        )
    )
    return fl_round


def assign_frame(job: Job, fl_round: Round, assignment: Assignment) -> dict:
    model = fl_round.base_model
    return {
        "type": "assign",
        "assignment": assignment.id,
        "job": job.id,
        "round": fl_round.number,
        "kernel": job.kernel,
        "config": job.config,
        "model": {
            "version": model.id,
            "sha256": model.sha256,
            "length": model.length,
            "size": model.size,
            # Small models follow the assign frame unasked, unless the worker keeps a cache
            # and asks for what it lacks; larger ones are always requested.
            "push": model.size <= settings.CCGSC_MODEL_PUSH_BYTES
            and assignment.worker.capabilities.get("model_push", True),
        },
        "upload": {
            "codec": job.policy["codec"],
            "chunk_size": settings.CCGSC_CHUNK_BYTES,
            "max_norm": job.policy["max_update_norm"],
        },
        "deadline": fl_round.deadline.isoformat(),
    }


def worker_open_assignments(*, worker_id: int) -> list[dict]:
    """Channel events re-offering a reconnecting worker the assignments it still holds.

    A worker whose server process died mid-round reconnects elsewhere; its assignments are
    still pending in the database, so it is told of them again instead of being dropped.
    """
    pending = Assignment.objects.filter(
        worker_id=worker_id, status__in=Assignment.PENDING, fl_round__status=Round.Status.TRAINING
    ).select_related("fl_round__job", "fl_round__base_model", "worker")
    return [
        {
            "frame": assign_frame(a.fl_round.job, a.fl_round, a),
            "context": upload_context(a.fl_round.job, a.fl_round, a),
        }
        for a in pending
    ]


def upload_context(job: Job, fl_round: Round, assignment: Assignment) -> dict:
    """What the gateway needs to check an upload for this assignment."""
    return {
        "assignment": assignment.id,
        "round_id": fl_round.id,
        "length": fl_round.base_model.length,
        "codec": job.policy["codec"],
        "max_norm": job.policy["max_update_norm"],
    }


def _locked_assignment(*, worker_id: int, assignment_id: int) -> tuple[Round, Assignment]:
    """Lock the assignment's round, then the assignment; unknown or foreign ids raise."""
    round_id = (
        Assignment.objects.filter(pk=assignment_id, worker_id=worker_id)
        .values_list("fl_round_id", flat=True)
        .first()
    )
    fl_round = Round.objects.select_for_update().filter(pk=round_id).first()
    assignment = Assignment.objects.select_for_update().filter(pk=assignment_id).first()
    if fl_round is None or assignment is None:
        raise AssignmentError(
            "unknown_assignment", f"no assignment {assignment_id} for you", assignment_id
        )
    return fl_round, assignment


def assignments_accept(pairs: Sequence[tuple[int, int]]) -> list[None]:
    """offered → accepted for many (worker id, assignment id) pairs in one statement.

    For assignments the gateway already knows belong to their workers; unknown ids simply
    match nothing.
    """
    mine = Q()
    for worker_id, assignment_id in pairs:
        mine |= Q(pk=assignment_id, worker_id=worker_id)
    Assignment.objects.filter(mine, status=Assignment.Status.OFFERED).update(
        status=Assignment.Status.ACCEPTED
    )
    return [None] * len(pairs)


def assignment_accept(*, worker_id: int, assignment_id: int) -> None:
    """offered → accepted in one conditional update; repeats and later states are no-ops."""
    accepted = Assignment.objects.filter(
        pk=assignment_id, worker_id=worker_id, status=Assignment.Status.OFFERED
    ).update(status=Assignment.Status.ACCEPTED)
    if (
        not accepted
        and not Assignment.objects.filter(pk=assignment_id, worker_id=worker_id).exists()
    ):
        raise AssignmentError(
            "unknown_assignment", f"no assignment {assignment_id} for you", assignment_id
        )


@transaction.atomic
def assignment_check_open(
    *, worker_id: int, assignment_id: int, sha256: str | None = None
) -> Assignment:
    """The assignment if it may still receive this update, else AssignmentError with why.

    An update with the recorded SHA-256 may be sent again (its acknowledgement was lost);
    the report then answers "accepted" without counting it twice.
    """
    fl_round, assignment = _locked_assignment(worker_id=worker_id, assignment_id=assignment_id)
    if assignment.status == Assignment.Status.REPORTED and assignment.update_sha256 == sha256:
        return assignment
    _check_open(fl_round, assignment)
    return assignment


def _check_open(fl_round: Round, assignment: Assignment) -> None:
    if assignment.status == Assignment.Status.REPORTED:
        raise AssignmentError(
            "replayed", "this assignment already has an accepted update", assignment.id
        )
    if assignment.status not in Assignment.PENDING or fl_round.status != Round.Status.TRAINING:
        raise AssignmentError(
            "wrong_round", "the round no longer accepts this assignment", assignment.id
        )


REPEATED = "repeated"  # answered to the worker as "accepted"; the new copy is not kept


@dataclass(frozen=True)
class Report:
    """A stored, verified update that a worker reports on its assignment."""

    worker_id: int
    assignment_id: int
    update_key: str
    sha256: str
    nbytes: int
    num_samples: int
    metrics: dict = field(default_factory=dict)
    round_id: int | None = None
    bytes_down: int = 0


def assignment_report(**fields) -> str:
    """Record one update (see assignments_report). Returns "accepted" or raises."""
    result = assignments_report([Report(**fields)])[0]
    if isinstance(result, AssignmentError):
        raise result
    return "accepted" if result == REPEATED else result


@transaction.atomic
def assignments_report(reports: Sequence[Report]) -> list[str | AssignmentError]:
    """Record many stored, verified updates in one transaction: the hot path of a round.

    Per round: lock the round once, lock the batch's assignments in one query, decide each
    report, then write the accepted ones with one bulk update and the counters once. A repeated
    report of the same bytes is "accepted" again; anything else that is not pending is an error.
    """
    results: dict[int, str | AssignmentError] = {}
    by_round: dict[int, list[tuple[int, Report]]] = defaultdict(list)
    for index, report in enumerate(reports):
        round_id = report.round_id or _round_of(report)
        if round_id is None:
            results[index] = AssignmentError(
                "unknown_assignment", "no such assignment for you", report.assignment_id
            )
        else:
            by_round[round_id].append((index, report))
    for round_id in sorted(by_round):  # one lock order for every writer
        results.update(_report_in_round(round_id, by_round[round_id]))
    return [results[index] for index in range(len(reports))]


def _round_of(report: Report) -> int | None:
    return (
        Assignment.objects.filter(pk=report.assignment_id, worker_id=report.worker_id)
        .values_list("fl_round_id", flat=True)
        .first()
    )


def _report_in_round(
    round_id: int, items: list[tuple[int, Report]]
) -> dict[int, str | AssignmentError]:
    fl_round = Round.objects.select_for_update().get(pk=round_id)
    assignments = Assignment.objects.select_for_update().in_bulk(
        [r.assignment_id for _, r in items]
    )
    results: dict[int, str | AssignmentError] = {}
    accepted: list[Assignment] = []
    for index, report in items:
        assignment = assignments.get(report.assignment_id)
        try:
            results[index] = _decide(fl_round, assignment, report)
        except AssignmentError as exc:
            results[index] = exc
            continue
        if results[index] != REPEATED:
            _mark_reported(assignment, report)
            accepted.append(assignment)
            fl_round.participants += 1
            fl_round.bytes_up += report.nbytes
            fl_round.bytes_down += report.bytes_down
    if accepted:
        _write_reported(accepted)
        fl_round.save(update_fields=["participants", "bytes_up", "bytes_down"])
        Worker.objects.filter(pk__in=[a.worker_id for a in accepted]).update(
            updates_accepted=F("updates_accepted") + 1
        )
        _after_settle(fl_round)
    return results


_REPORTED_FIELDS = [
    "status",
    "update_key",
    "update_sha256",
    "update_bytes",
    "num_samples",
    "metrics",
    "settled_at",
]


def _write_reported(assignments: list[Assignment]) -> None:
    """One parametrized UPDATE run for every row (the driver pipelines it); bulk_update's
    CASE expressions cost more to build than the rows they write."""
    fields = [Assignment._meta.get_field(name) for name in _REPORTED_FIELDS]
    sets = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
    sql = f"UPDATE {connection.ops.quote_name(Assignment._meta.db_table)} SET {sets} WHERE id = %s"
    rows = [
        [f.get_db_prep_save(getattr(a, f.attname), connection) for f in fields] + [a.pk]
        for a in assignments
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _decide(fl_round: Round, assignment: Assignment | None, report: Report) -> str:
    """ "accepted" when the report may be recorded (or repeats the recorded one), else raise."""
    if (
        assignment is None
        or assignment.worker_id != report.worker_id
        or (assignment.fl_round_id != fl_round.id)
    ):
        raise AssignmentError(
            "unknown_assignment", "no such assignment for you", report.assignment_id
        )
    if (
        assignment.status == Assignment.Status.REPORTED
        and assignment.update_sha256 == report.sha256
    ):
        return REPEATED  # a repeated result whose acknowledgement was lost
    _check_open(fl_round, assignment)
    return "accepted"


def _mark_reported(assignment: Assignment, report: Report) -> None:
    assignment.status = Assignment.Status.REPORTED
    assignment.update_key, assignment.update_sha256 = report.update_key, report.sha256
    assignment.update_bytes, assignment.num_samples = report.nbytes, report.num_samples
    assignment.metrics = _clean_metrics(report.metrics)
    assignment.settled_at = timezone.now()


def _clean_metrics(metrics: dict) -> dict:
    """Keep the finite numbers a worker reported under short names."""
    return {
        str(k)[:32]: float(v)
        for k, v in list(metrics.items())[:16]
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
    }


@transaction.atomic
def assignment_reject(*, worker_id: int, assignment_id: int, code: str) -> None:
    """A bad update: the assignment is rejected and counted; its bytes are never aggregated."""
    fl_round, assignment = _locked_assignment(worker_id=worker_id, assignment_id=assignment_id)
    fl_round.bad_frames += 1
    if assignment.status in Assignment.PENDING and fl_round.status == Round.Status.TRAINING:
        assignment.status, assignment.error_code = Assignment.Status.REJECTED, code
        assignment.settled_at = timezone.now()
        assignment.save(update_fields=["status", "error_code", "settled_at"])
        fl_round.rejected += 1
        Worker.objects.filter(pk=worker_id).update(updates_rejected=F("updates_rejected") + 1)
    fl_round.save(update_fields=["bad_frames", "rejected"])
    _after_settle(fl_round)


def bad_frame_count(*, worker_id: int, assignment_id: int | None) -> None:
    """Count a protocol error on the worker and on the round it names or is working in."""
    assignments = Assignment.objects.filter(worker_id=worker_id)
    if assignment_id is not None:
        assignments = assignments.filter(pk=assignment_id)
    else:
        assignments = assignments.filter(
            status__in=Assignment.PENDING, fl_round__status=Round.Status.TRAINING
        )
    round_id = assignments.order_by("-id").values_list("fl_round_id", flat=True).first()
    if round_id is not None:
        Round.objects.filter(pk=round_id).update(bad_frames=F("bad_frames") + 1)
    Worker.objects.filter(pk=worker_id).update(bad_frames=F("bad_frames") + 1)


@transaction.atomic
def assignment_drop(*, worker_id: int, assignment_id: int, reason: str) -> None:
    fl_round, assignment = _locked_assignment(worker_id=worker_id, assignment_id=assignment_id)
    if assignment.status not in Assignment.PENDING or fl_round.status != Round.Status.TRAINING:
        return
    assignment.status, assignment.error_code = Assignment.Status.DROPPED, reason
    assignment.settled_at = timezone.now()
    assignment.save(update_fields=["status", "error_code", "settled_at"])
    fl_round.dropped += 1
    fl_round.save(update_fields=["dropped"])
    _after_settle(fl_round)


def worker_drop_pending(*, worker_id: int, reason: str) -> int:
    """Drop every pending assignment of a worker that has gone (each in its own transaction)."""
    pending = Assignment.objects.filter(
        worker_id=worker_id, status__in=Assignment.PENDING, fl_round__status=Round.Status.TRAINING
    ).values_list("id", flat=True)
    ids = list(pending)
    for assignment_id in ids:
        assignment_drop(worker_id=worker_id, assignment_id=assignment_id, reason=reason)
    return len(ids)


def round_add_bytes_down(*, worker_id: int, assignment_id: int, nbytes: int) -> None:
    Round.objects.filter(assignments__id=assignment_id, assignments__worker_id=worker_id).update(
        bytes_down=F("bytes_down") + nbytes
    )


def _after_settle(fl_round: Round) -> None:
    """With the round locked: aggregate at quorum, fail when quorum can no longer be met."""
    if fl_round.status != Round.Status.TRAINING:
        return
    settled = fl_round.participants + fl_round.dropped + fl_round.rejected + fl_round.late
    pending = settled < fl_round.selected
    if fl_round.participants >= fl_round.cohort_target or (
        not pending and fl_round.participants >= fl_round.min_reports
    ):
        _start_aggregation(fl_round)
    elif not pending:
        _round_fail(fl_round, f"quorum missed: {fl_round.participants} of {fl_round.min_reports}")


def _stop_pending(fl_round: Round) -> None:
    """Pending assignments of a round that stops accepting work become late; workers are told."""
    pending = list(
        fl_round.assignments.filter(status__in=Assignment.PENDING).select_related("worker")
    )
    Assignment.objects.filter(pk__in=[a.pk for a in pending]).update(
        status=Assignment.Status.LATE, error_code="round_closed", settled_at=timezone.now()
    )
    fl_round.late += len(pending)
    frames = [
        (a.worker.channel_name, {"type": "cancel", "assignment": a.id, "reason": "round closed"})
        for a in pending
        if a.worker.channel_name
    ]
    transaction.on_commit(lambda: gateway.send_frames(frames))


def _start_aggregation(fl_round: Round) -> None:
    _stop_pending(fl_round)
    fl_round.status = Round.Status.AGGREGATING
    fl_round.save(update_fields=["status", "late"])
    transaction.on_commit(lambda: _tasks().round_aggregate.delay(fl_round.id))


def round_stop(fl_round: Round, reason: str) -> None:
    """With the round locked: mark it failed and release its pending workers."""
    _stop_pending(fl_round)
    fl_round.status, fl_round.error, fl_round.ended_at = Round.Status.FAILED, reason, timezone.now()
    fl_round.save(update_fields=["status", "error", "ended_at", "late"])
    transaction.on_commit(lambda: gateway.notify_director(fl_round.job_id))


def _round_fail(fl_round: Round, reason: str) -> None:
    """Fail the round; retry it or fail the job, as the job's policy says."""
    round_stop(fl_round, reason)
    job = Job.objects.select_for_update().get(pk=fl_round.job_id)
    if job.status not in (Job.Status.RUNNING, Job.Status.PAUSED):
        return
    policy = job.policy
    if policy["on_quorum_miss"] == "retry" and fl_round.attempt <= policy["max_round_retries"]:
        round_open(
            job=job,
            base_model=fl_round.base_model,
            number=fl_round.number,
            attempt=fl_round.attempt + 1,
        )
    else:
        job_finish(job, Job.Status.FAILED, f"round {fl_round.number} failed: {reason}")


def job_finish(job: Job, status: str, error: str = "") -> None:
    """A job ends; the compute units it still had out are taken back from their workers."""
    job.status, job.error, job.ended_at = status, error, timezone.now()
    job.save(update_fields=["status", "error", "ended_at"])
    compute.job_replicas_release(job, f"job {status}")
    transaction.on_commit(lambda: gateway.notify_director(job.id))


@transaction.atomic
def round_check_deadline(*, round_id: int) -> None:
    fl_round = Round.objects.select_for_update().filter(pk=round_id).first()
    if fl_round is None or fl_round.status != Round.Status.TRAINING:
        return
    if fl_round.deadline and fl_round.deadline > timezone.now():
        return
    if fl_round.participants >= fl_round.min_reports:
        _start_aggregation(fl_round)
    else:
        _round_fail(fl_round, f"deadline passed with {fl_round.participants} reports")


def round_aggregate(*, round_id: int) -> None:
    """Claim the round, fold its accepted updates into the new model, close it, open the next.

    Updates stream from storage one at a time into the weighted mean (O(model) memory). A
    stored update that is missing or fails its hash is left out and its assignment rejected.
    """
    if not _claim_aggregation(round_id):
        return
    fl_round = Round.objects.select_related("job", "base_model").get(pk=round_id)
    job = fl_round.job
    reports = list(fl_round.assignments.filter(status=Assignment.Status.REPORTED).order_by("id"))
    base = model_weights(fl_round.base_model)
    mean, kept, broken = strategies.WeightedMean(base.size), [], []
    for assignment in reports:
        update = _read_update(assignment, base.size, job.policy["codec"])
        if update is None:
            broken.append(assignment.id)
        else:
            mean.add(update, float(assignment.num_samples))
            kept.append(assignment)
    if not kept:
        _round_close_failed(round_id, broken)
        return
    weights = strategies.apply_delta(base, mean.result(), job.policy["server_lr"])
    metrics = {**_worker_metrics(kept), **_evaluate(job, weights)}
    _round_close(fl_round.id, weights, metrics, [a.id for a in kept], broken)


def _claim_aggregation(round_id: int) -> bool:
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CCGSC_AGGREGATION_CLAIM_TIMEOUT_S)
    return bool(
        Round.objects.filter(pk=round_id, status=Round.Status.AGGREGATING)
        .filter(Q(aggregation_claimed_at__isnull=True) | Q(aggregation_claimed_at__lt=stale))
        .update(aggregation_claimed_at=now)
    )


def _read_update(assignment: Assignment, length: int, codec: str) -> np.ndarray | None:
    """A stored update, or None when it is gone or does not match its recorded hash."""
    try:
        with default_storage.open(assignment.update_key, "rb") as handle:
            data = handle.read()
    except OSError:
        log.error("stored update of assignment %s is missing", assignment.id)
        return None
    if wire.sha256_hex(data) != assignment.update_sha256:
        log.error("stored update of assignment %s does not match its hash", assignment.id)
        return None
    return wire.decode_tensor(data, codec, length)


def _reject_broken(fl_round: Round, broken: list[int]) -> None:
    """Assignments whose stored update was lost: rejected, so the counts say what was used."""
    if broken:
        Assignment.objects.filter(pk__in=broken).update(
            status=Assignment.Status.REJECTED, error_code="storage"
        )
        fl_round.participants -= len(broken)
        fl_round.rejected += len(broken)
        fl_round.save(update_fields=["participants", "rejected"])


@transaction.atomic
def _round_close_failed(round_id: int, broken: list[int]) -> None:
    fl_round = Round.objects.select_for_update().get(pk=round_id)
    if fl_round.status == Round.Status.AGGREGATING:
        _reject_broken(fl_round, broken)
        _round_fail(fl_round, "no stored update could be read")


def _worker_metrics(reports: list[Assignment]) -> dict:
    """The workers' own training metrics, averaged by sample count."""
    total = sum(a.num_samples for a in reports)
    out: dict[str, float] = {}
    for name in ("loss", "accuracy"):
        pairs = [(a.metrics[name], a.num_samples) for a in reports if name in a.metrics]
        if pairs and total:
            out[f"train_{name}"] = sum(v * n for v, n in pairs) / sum(n for _, n in pairs)
    out["num_samples"] = total
    return out


def _evaluate(job: Job, weights: np.ndarray) -> dict:
    """Server-side evaluation on the held-out split when the job names a bundled dataset."""
    dataset = job.config.get("dataset")
    if not dataset:
        return {}
    data = load_dataset(dataset)
    result = get_kernel(job.kernel).evaluate(weights, data.X_test, data.y_test, job.config)
    return {"loss": float(result["loss"]), "accuracy": float(result["accuracy"])}


@transaction.atomic
def _round_close(
    round_id: int, weights: np.ndarray, metrics: dict, aggregated: list[int], broken: list[int]
) -> None:
    fl_round = Round.objects.select_for_update().select_related("base_model").get(pk=round_id)
    if fl_round.status != Round.Status.AGGREGATING:
        return  # another claimant finished first
    _reject_broken(fl_round, broken)
    job = Job.objects.select_for_update().get(pk=fl_round.job_id)
    model = model_version_create(
        job_id=job.id,
        version=fl_round.base_model.version + 1,
        weights=weights,
        parent=fl_round.base_model,
        fl_round_id=fl_round.id,
        metrics=metrics,
    )
    Assignment.objects.filter(pk__in=aggregated).update(aggregated=True)
    fl_round.status, fl_round.metrics, fl_round.ended_at = (
        Round.Status.CLOSED,
        metrics,
        timezone.now(),
    )
    fl_round.save(update_fields=["status", "metrics", "ended_at"])
    _job_advance(job, fl_round, model)


def _job_advance(job: Job, fl_round: Round, model: ModelVersion) -> None:
    """After a closed round: complete the job or open the next round (not while paused)."""
    transaction.on_commit(lambda: gateway.notify_director(job.id))
    if job.status != Job.Status.RUNNING:
        return
    target = job.policy.get("target_accuracy")
    if fl_round.number >= job.policy["max_rounds"]:
        job_finish(job, Job.Status.COMPLETED)
    elif target is not None and fl_round.metrics.get("accuracy", 0.0) >= target:
        job_finish(job, Job.Status.COMPLETED)
    else:
        round_open(job=job, base_model=model, number=fl_round.number + 1)


def rounds_sweep() -> dict:
    """Periodic repair: forget silent workers, enforce deadlines, retry selection and claims."""
    now = timezone.now()
    silent = now - timedelta(seconds=settings.CCGSC_WORKER_TIMEOUT_S)
    gone = list(
        Worker.objects.exclude(channel_name="")
        .filter(last_seen__lt=silent)
        .values_list("id", flat=True)
    )
    Worker.objects.filter(pk__in=gone).update(channel_name="")
    for worker_id in gone:
        worker_drop_pending(worker_id=worker_id, reason="timeout")
    tasks = _tasks()
    overdue = Round.objects.filter(status=Round.Status.TRAINING, deadline__lt=now)
    for round_id in overdue.values_list("id", flat=True):
        round_check_deadline(round_id=round_id)
    selecting = Round.objects.filter(status=Round.Status.SELECTING, job__status=Job.Status.RUNNING)
    for round_id in selecting.values_list("id", flat=True):
        tasks.round_select.delay(round_id)
    stale = now - timedelta(seconds=settings.CCGSC_AGGREGATION_CLAIM_TIMEOUT_S)
    unclaimed = Round.objects.filter(status=Round.Status.AGGREGATING).filter(
        Q(aggregation_claimed_at__isnull=True, started_at__lt=now - timedelta(seconds=30))
        | Q(aggregation_claimed_at__lt=stale)
    )
    for round_id in unclaimed.values_list("id", flat=True):
        tasks.round_aggregate.delay(round_id)
    return {"gone": len(gone), "selecting": selecting.count()}


def worker_gone(*, worker_id: int) -> int:
    if Worker.objects.filter(pk=worker_id).exclude(channel_name="").exists():
        return 0  # it reconnected within the grace period
    return worker_drop_pending(worker_id=worker_id, reason="disconnected")
