"""A crawler's reports, pipelined: the stream keeps reading while earlier reports are written.

Written one at a time, a crawler's reports would queue behind each other (and behind every other
write) while its stream stops reading: its slots share one FIFO of writes. Here each report is a
task; reports with the same key (one run's steps and result, in the order sent) are written in
order, different keys concurrently, at most `limit` at once (then reading waits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable

import structlog

log = structlog.get_logger(__name__)
#: Reports of one crawler being written at once, at most.
IN_FLIGHT = 64


class Pipeline:
    """Ordered per key, concurrent across keys, bounded."""

    def __init__(self, worker_id: str, limit: int = IN_FLIGHT) -> None:
        self._worker_id = worker_id
        self._room = asyncio.Semaphore(limit)
        self._last: dict[Hashable, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: Hashable, handle: Callable[[], Awaitable[None]]) -> None:
        """Start `handle()` after the reports submitted earlier with `key`; waits while `limit`
        reports are in flight."""
        await self._room.acquire()
        task = asyncio.create_task(self._run(self._last.get(key), handle))
        self._last[key] = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._done(key, done))

    async def drain(self) -> None:
        """Wait until every report submitted so far is written."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _run(
        self, previous: asyncio.Task[None] | None, handle: Callable[[], Awaitable[None]]
    ) -> None:
        if previous is not None and not previous.done():
            # (A done one is not waited for: `asyncio.wait` would still cost a pass of the event
            # loop, on a crawler's critical path while the loop is busy.)
            await asyncio.wait([previous])
        try:
            await handle()
        except Exception:
            # A failed write (e.g. the database briefly unavailable) must not end the stream:
            # the lease machinery recovers the run if reports are lost.
            log.exception("worker.message_failed", worker=self._worker_id)

    def _done(self, key: Hashable, task: asyncio.Task[None]) -> None:
        self._room.release()
        self._tasks.discard(task)
        if self._last.get(key) is task:
            del self._last[key]
