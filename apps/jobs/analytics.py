"""Analytics jobs: contribution requests, bounded contributions, and the charged private release.

Each transition is one transaction. Lock order, wherever two are taken: the job, then the
contribution, then the worker. The release charges the job's privacy ledger, stores the
released statistic and completes the job in one transaction with the job row locked, so a
refused or failed release leaves neither a charge nor a result, and a repeat does nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from apps.jobs import gateway
from apps.jobs.consent import ANALYTICS_CONSENT_VERSIONS
from apps.jobs.models import AnalyticsContribution, Job, Worker
from apps.rounds.privacy import BudgetExceeded, Ledger
from kernels import analytics as kernel

log = logging.getLogger(__name__)

ACCEPTED = "accepted"
LATE = "late"  # the job ended (or released) before this contribution arrived
BAD_CONTRIBUTION = "bad_contribution"
_Status = AnalyticsContribution.Status
_ACTIVE = {Job.Status.RUNNING, Job.Status.PAUSED}


class ContributionError(Exception):
    """A worker referred to a contribution it may not send; ``code`` is a wire error code."""

    def __init__(self, code: str, message: str, contribution_id: int) -> None:
        super().__init__(message)
        self.code, self.message, self.contribution_id = code, message, contribution_id


def _tasks():  # noqa: ANN202 - tasks import this module, so import them late
    from apps.jobs import tasks

    return tasks


def new_ledger(policy: dict) -> dict:
    """The stored form of a fresh ledger with the policy's epsilon budget."""
    return Ledger(epsilon_budget=policy["epsilon_budget"]).to_dict()


def contributors(tenant_id: int) -> QuerySet[Worker]:
    """The tenant's connected, recently seen workers that hold rows of data.

    Browser workers count only with recorded consent, as in round selection, and only to an
    explainer that says analytics aggregates leave the device.
    """
    fresh = timezone.now() - timedelta(seconds=settings.CCGSC_WORKER_TIMEOUT_S)
    consented = Q(
        kind=Worker.Kind.BROWSER,
        consented_at__isnull=False,
        consent_version__in=ANALYTICS_CONSENT_VERSIONS,
    )
    return Worker.objects.filter(
        Q(kind=Worker.Kind.PYTHON) | consented,
        tenant_id=tenant_id,
        is_active=True,
        last_seen__gte=fresh,
        capabilities__samples__gt=0,
    ).exclude(channel_name="")


def contributor_ids(tenant_id: int) -> list[int]:
    return list(contributors(tenant_id).values_list("id", flat=True))


def contribution_frame(contribution: AnalyticsContribution) -> dict:
    return {
        "type": "contribute",
        "contribution": contribution.id,
        "job": contribution.job_id,
        "config": contribution.job.config,
    }


def job_contributions_start(*, job: Job) -> None:
    """With the job locked and just set running: ask each contributor for its contribution
    (again, for those asked before a pause), and release if enough are in already."""
    for worker_id in contributor_ids(job.tenant_id):
        AnalyticsContribution.objects.get_or_create(job=job, worker_id=worker_id)
    requested = job.contributions.filter(status=_Status.REQUESTED).select_related("worker", "job")
    _send(list(requested))
    transaction.on_commit(lambda: _tasks().analytics_release.delay(job.id))


def worker_contributions_offer(*, worker_id: int, tenant_id: int) -> int:
    """On a worker's hello: ask it for its contribution to each running analytics job of its
    tenant it has not answered (a newcomer is asked too); returns the requests sent."""
    running = Job.objects.filter(
        tenant_id=tenant_id, type=Job.Type.ANALYTICS, status=Job.Status.RUNNING
    )
    if not running.exists() or not contributors(tenant_id).filter(pk=worker_id).exists():
        return 0
    with transaction.atomic():
        return _offer(worker_id, running)


def _offer(worker_id: int, running: QuerySet[Job]) -> int:
    unasked = running.exclude(contributions__worker_id=worker_id)
    for job_id in unasked.values_list("id", flat=True):
        AnalyticsContribution.objects.get_or_create(job_id=job_id, worker_id=worker_id)
    requested = AnalyticsContribution.objects.filter(
        worker_id=worker_id, status=_Status.REQUESTED, job__status=Job.Status.RUNNING
    ).select_related("worker", "job")
    return _send(list(requested))


def _send(contributions: list[AnalyticsContribution]) -> int:
    frames = [(c.worker.channel_name, contribution_frame(c)) for c in contributions]
    frames = [(channel, frame) for channel, frame in frames if channel]
    if frames:
        transaction.on_commit(lambda: gateway.send_frames(frames))
    return len(frames)


def contribution_record(*, worker_id: int, contribution_id: int, result: Any) -> str:
    """The worker's contribution: requested → accepted, or rejected when it lies outside the
    config's bounds (committed and counted on the worker, then ContributionError
    "bad_contribution" is raised). "accepted" again when it repeats; "late" when the
    job is no longer running or paused."""
    status, reason = _record(worker_id=worker_id, contribution_id=contribution_id, result=result)
    if status == BAD_CONTRIBUTION:
        raise ContributionError(BAD_CONTRIBUTION, reason, contribution_id)
    return status


@transaction.atomic
def _record(*, worker_id: int, contribution_id: int, result: Any) -> tuple[str, str]:
    found = AnalyticsContribution.objects.filter(pk=contribution_id, worker_id=worker_id)
    job_id = found.values_list("job_id", flat=True).first()
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    contribution = found.select_for_update().first()
    if job is None or contribution is None:
        raise ContributionError(
            "unknown_assignment", f"no contribution {contribution_id} for you", contribution_id
        )
    if contribution.status == _Status.ACCEPTED:
        return ACCEPTED, ""  # a repeat whose acknowledgement was lost
    if contribution.status != _Status.REQUESTED or job.status not in _ACTIVE:
        return LATE, ""
    try:
        kernel.check_contribution(result, job.config)
    except ValueError as exc:
        _reject(contribution, str(exc))
        return BAD_CONTRIBUTION, str(exc)
    contribution.status, contribution.result = _Status.ACCEPTED, dict(result)
    contribution.returned_at = timezone.now()
    contribution.save(update_fields=["status", "result", "returned_at"])
    Worker.objects.filter(pk=worker_id).update(updates_accepted=F("updates_accepted") + 1)
    accepted = job.contributions.filter(status=_Status.ACCEPTED).count()
    if job.status == Job.Status.RUNNING and accepted >= job.policy["min_workers"]:
        transaction.on_commit(lambda: _tasks().analytics_release.delay(job.id))
    return ACCEPTED, ""


def _reject(contribution: AnalyticsContribution, reason: str) -> None:
    contribution.status, contribution.error = _Status.REJECTED, reason[:200]
    contribution.returned_at = timezone.now()
    contribution.save(update_fields=["status", "error", "returned_at"])
    Worker.objects.filter(pk=contribution.worker_id).update(
        updates_rejected=F("updates_rejected") + 1
    )


def job_release(*, job_id: int, rng: np.random.Generator | None = None) -> None:
    """running → completed: charge the ledger for the config's epsilon, merge the accepted
    contributions, release the statistic (Laplace noise from ``rng``, by default seeded from
    OS entropy) and store it as the job's result, all in one transaction with the job locked.

    Does nothing unless the job is running with ``min_workers`` accepted contributions, so a
    repeat is a no-op. A release the budget cannot pay for fails the job and charges nothing.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.type != Job.Type.ANALYTICS or job.status != Job.Status.RUNNING:
            return
        accepted = list(job.contributions.filter(status=_Status.ACCEPTED).order_by("id"))
        if len(accepted) < job.policy["min_workers"]:
            return
        ledger = Ledger.from_dict(job.privacy or new_ledger(job.policy))
        try:
            ledger.charge(float(job.config["epsilon"] or 0.0), label=f"job {job.id} release")
        except BudgetExceeded as exc:
            _finish(job, Job.Status.FAILED, str(exc))
            return
        merged = kernel.merge([c.result for c in accepted], job.config)
        released = kernel.release(merged, job.config, rng=rng or np.random.default_rng())
        rejected = job.contributions.filter(status=_Status.REJECTED).count()
        job.result = {**released, "contributions": len(accepted), "rejected": rejected}
        job.privacy = ledger.to_dict()
        job.save(update_fields=["result", "privacy"])
        _finish(job, Job.Status.COMPLETED)


def _finish(job: Job, status: str, error: str = "") -> None:
    """With the job locked: it ends; the contributions still requested are not needed."""
    from apps.rounds.services import job_finish

    job.contributions.filter(status=_Status.REQUESTED).update(status=_Status.FAILED)
    job_finish(job, status, error)


@transaction.atomic
def job_check_deadline(*, job_id: int) -> None:
    """A running analytics job past its deadline_s without min_workers contributions fails."""
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    if job is None or job.type != Job.Type.ANALYTICS or job.status != Job.Status.RUNNING:
        return
    deadline = job.started_at + timedelta(seconds=job.policy["deadline_s"])
    accepted = job.contributions.filter(status=_Status.ACCEPTED).count()
    if deadline > timezone.now() or accepted >= job.policy["min_workers"]:
        return
    wanted = job.policy["min_workers"]
    _finish(job, Job.Status.FAILED, f"deadline passed with {accepted} of {wanted} contributions")


def analytics_sweep() -> dict:
    """Periodic repair: fail running analytics jobs past their deadline, and release those
    whose release task was lost."""
    running = Job.objects.filter(type=Job.Type.ANALYTICS, status=Job.Status.RUNNING)
    ids = list(running.values_list("id", flat=True))
    for job_id in ids:
        job_release(job_id=job_id)
        job_check_deadline(job_id=job_id)
    return {"checked": len(ids)}


def privacy_summary(job: Job) -> dict | None:
    """An analytics job's epsilon spent and budget (None for other jobs)."""
    if job.privacy is None:
        return None
    ledger = Ledger.from_dict(job.privacy)
    return {"epsilon_spent": ledger.spent.epsilon, "epsilon_budget": ledger.epsilon_budget}
