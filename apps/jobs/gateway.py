"""Sending frames to connected workers from synchronous code (services, Celery tasks)."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def send_frames(frames: list[tuple[str, dict]], contexts: list[dict] | None = None) -> None:
    """Deliver (channel_name, frame) pairs through the channel layer, concurrently.

    A context rides along with its frame to the worker's consumer (never to the worker): the
    facts the consumer needs to check that worker's upload without asking the database.
    """
    if frames:
        async_to_sync(_send_all)(frames, contexts or [{}] * len(frames))


async def _send_all(frames: list[tuple[str, dict]], contexts: list[dict]) -> None:
    layer = get_channel_layer()
    results = await asyncio.gather(
        *(
            layer.send(channel, {"type": "worker.send", "frame": frame, "context": context})
            for (channel, frame), context in zip(frames, contexts, strict=True)
        ),
        return_exceptions=True,
    )
    for (channel, _frame), result in zip(frames, results, strict=True):
        if isinstance(result, Exception):
            log.warning("could not deliver a frame to %s: %s", channel, result)


def notify_director(job_id: int) -> None:
    """Tell open Director pages that a job changed (they re-fetch what they show)."""
    async_to_sync(_notify)(job_id)


async def _notify(job_id: int) -> None:
    layer = get_channel_layer()
    event = {"type": "job.changed", "job": job_id}
    try:
        await layer.group_send("director", event)
    except Exception as exc:  # noqa: BLE001 - a live view must never break a write
        log.warning("director notification failed: %s", exc)
