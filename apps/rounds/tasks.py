"""Celery tasks for rounds: thin, idempotent wrappers that take ids and call a service."""

from __future__ import annotations

from celery import shared_task

from apps.rounds import services


@shared_task
def round_select(round_id: int) -> None:
    services.round_select(round_id=round_id)


@shared_task
def round_check_deadline(round_id: int) -> None:
    services.round_check_deadline(round_id=round_id)


@shared_task(acks_late=True)
def round_aggregate(round_id: int) -> None:
    """Claimed inside the service, so a redelivered or repeated task does nothing."""
    services.round_aggregate(round_id=round_id)


@shared_task
def rounds_sweep() -> dict:
    return services.rounds_sweep()


@shared_task
def worker_gone(worker_id: int) -> None:
    """After the reconnect grace: drop the pending work of a worker that did not come back."""
    services.worker_gone(worker_id=worker_id)
