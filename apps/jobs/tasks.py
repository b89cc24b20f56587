"""Celery tasks for compute and analytics jobs: thin, idempotent wrappers over services."""

from __future__ import annotations

from celery import shared_task

from apps.jobs import analytics, compute


@shared_task
def units_dispatch(tenant_id: int) -> int:
    return compute.units_dispatch(tenant_id=tenant_id)


@shared_task(acks_late=True)
def job_reduce(job_id: int) -> None:
    """The job row is locked and its status checked inside the service: a repeat does nothing."""
    compute.job_reduce(job_id=job_id)


@shared_task
def units_sweep() -> dict:
    return compute.units_sweep()


@shared_task
def worker_units_release(worker_id: int) -> int:
    """After the reconnect grace: requeue the units of a worker that did not come back."""
    return compute.worker_units_release(worker_id=worker_id)


@shared_task(acks_late=True)
def analytics_release(job_id: int) -> None:
    """The job row is locked and its status checked inside the service: a repeat does nothing."""
    analytics.job_release(job_id=job_id)


@shared_task
def analytics_sweep() -> dict:
    return analytics.analytics_sweep()
