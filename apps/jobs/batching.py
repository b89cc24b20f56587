"""Group commits for the gateway: calls that arrive while a flush runs share the next one.

A round's reports arrive in a burst; writing each in its own transaction makes the database
thread the bottleneck. A Batcher hands everything queued so far to one call of a batch
function (one transaction) and answers each caller with its own result. There is no timer:
a lone call is flushed at once, and batches grow only when calls queue behind a flush.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any
from weakref import WeakKeyDictionary

from channels.db import database_sync_to_async


class Batcher:
    def __init__(self, flush: Callable[[Sequence[Any]], list[Any]]) -> None:
        self.flush = flush
        self.queue: list[tuple[Any, asyncio.Future]] = []
        self.draining = False

    async def submit(self, item: Any) -> Any:
        """The batch function's result for ``item``; an exception result is raised."""
        future = asyncio.get_running_loop().create_future()
        self.queue.append((item, future))
        if not self.draining:
            self.draining = True
            asyncio.ensure_future(self._drain())
        result = await future
        if isinstance(result, Exception):
            raise result
        return result

    async def _drain(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                try:
                    results = await database_sync_to_async(self.flush)([item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - every caller must hear of the failure
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self.draining = False


_batchers: WeakKeyDictionary = WeakKeyDictionary()


def batcher(flush: Callable[[Sequence[Any]], list[Any]]) -> Batcher:
    """The running event loop's batcher for ``flush`` (futures belong to one loop)."""
    per_loop = _batchers.setdefault(asyncio.get_running_loop(), {})
    if flush not in per_loop:
        per_loop[flush] = Batcher(flush)
    return per_loop[flush]
