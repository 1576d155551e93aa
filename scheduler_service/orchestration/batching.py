"""Step reports batched per attempt: written together within `window` of the first, or with the
attempt's result, whichever comes first.

A short step's STARTED, FINISHED and the attempt's result then cost one transaction instead of
three, while a watcher still sees each step event within `window` (20 ms) of its report. Order
is kept: an attempt's batches are written one after the other, and its result waits for the
batch being written, then takes the reports not written yet into its own transaction — so a
step's checkpoint is durable before, or together with, whatever the crawler reported after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from scheduler_service.runs.model import AttemptRef, StepReport

log = structlog.get_logger(__name__)
WINDOW = 0.02

#: Writes `reports` of attempt `ref` reported by crawler `worker_id`.
Write = Callable[[str, AttemptRef, list[StepReport]], Awaitable[None]]


@dataclass
class _Batch:
    worker_id: str
    reports: list[StepReport] = field(default_factory=list)
    timer: asyncio.Task[None] | None = None


class StepBatches:
    def __init__(self, write: Write, window: float = WINDOW) -> None:
        self._write = write
        self._window = window
        #: Reports not being written yet, per attempt.
        self._open: dict[AttemptRef, _Batch] = {}
        #: The write in progress, per attempt.
        self._writing: dict[AttemptRef, asyncio.Task[None]] = {}

    def add(self, worker_id: str, ref: AttemptRef, report: StepReport) -> None:
        batch = self._open.get(ref)
        if batch is None:
            batch = self._open[ref] = _Batch(worker_id)
            batch.timer = asyncio.create_task(self._flush_later(ref, batch))
        batch.reports.append(report)

    async def take(self, ref: AttemptRef) -> list[StepReport]:
        """The attempt's reports not written yet (for its result's transaction), after the write
        in progress."""
        batch = self._open.pop(ref, None)
        if batch is not None and batch.timer is not None:
            batch.timer.cancel()
        writing = self._writing.get(ref)
        if writing is not None and not writing.done():
            await asyncio.wait([writing])
        return batch.reports if batch is not None else []

    async def flush(self, worker_id: str) -> None:
        """Write every open batch of `worker_id` now (its stream ended)."""
        refs = [ref for ref, batch in self._open.items() if batch.worker_id == worker_id]
        for ref in refs:
            batch = self._open.pop(ref)
            if batch.timer is not None:
                batch.timer.cancel()
            await self._flush(ref, batch)

    async def _flush_later(self, ref: AttemptRef, batch: _Batch) -> None:
        await asyncio.sleep(self._window)
        if self._open.get(ref) is batch:
            del self._open[ref]
            batch.timer = None
            await self._flush(ref, batch)

    async def _flush(self, ref: AttemptRef, batch: _Batch) -> None:
        previous = self._writing.get(ref)
        task = asyncio.ensure_future(self._after(previous, ref, batch))
        self._writing[ref] = task
        try:
            await asyncio.shield(task)
        finally:
            if self._writing.get(ref) is task:
                del self._writing[ref]

    async def _after(
        self, previous: asyncio.Task[None] | None, ref: AttemptRef, batch: _Batch
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        try:
            await self._write(batch.worker_id, ref, batch.reports)
        except Exception:
            # As a report written alone: lost reports are recovered by the lease machinery.
            log.exception("worker.steps_failed", worker=batch.worker_id, run_id=ref.run_id)
