"""Reads about rounds and the workers that can take part in them."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from apps.jobs.models import Job, UnitReplica, Worker
from apps.rounds.models import Assignment, Round


def busy_worker_ids() -> QuerySet:
    return Assignment.objects.filter(
        status__in=Assignment.PENDING, fl_round__status__in=Round.OPEN
    ).values("worker_id")


def eligible_workers(job: Job) -> list[Worker]:
    """Connected, active, recently seen workers of the job's tenant that can run its kernel."""
    fresh = timezone.now() - timedelta(seconds=settings.CCGSC_WORKER_TIMEOUT_S)
    workers = (
        Worker.objects.filter(tenant_id=job.tenant_id, is_active=True, last_seen__gte=fresh)
        .exclude(channel_name="")
        .exclude(kind=Worker.Kind.BROWSER, consented_at__isnull=True)
        .exclude(id__in=busy_worker_ids())
        .exclude(replicas__status=UnitReplica.Status.ASSIGNED)  # busy with a compute unit
    )
    return [w for w in workers if job.kernel in w.capabilities.get("kernels", [job.kernel])]


def round_list(job: Job) -> QuerySet:
    return job.rounds.select_related("result_model").order_by("number", "attempt")


def open_round(job: Job) -> Round | None:
    return job.rounds.filter(status__in=[*Round.OPEN, Round.Status.AGGREGATING]).first()
