"""The periodic sweep: expired leases, deadlines, forced cancels, due retries, runs written by other
scheduler processes, and retention. Slow and cheap: the hot path never waits for it. On PostgreSQL
with the cluster listener up, other processes' runs and cancels arrive by notice instead: the sweep
is the safety net, not the path."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from common.clock import Clock
from common.errors import Unavailable
from scheduler_service.orchestration.orchestrator import Orchestrator

log = structlog.get_logger(__name__)
PURGE_EVERY = timedelta(minutes=10)


class Sweeper:
    def __init__(
        self, orchestrator: Orchestrator, clock: Clock, interval: timedelta, retention: timedelta
    ) -> None:
        self._orchestrator = orchestrator
        self._clock = clock
        self._interval = interval
        self._retention = retention
        self._last_purge = clock.now() - PURGE_EVERY
        self._stopping = asyncio.Event()
        #: Sweeps done so far (for tests and operators).
        self.sweeps = 0

    async def sweep_once(self) -> None:
        self.sweeps += 1
        await self._orchestrator.sweep()
        now = self._clock.now()
        if now - self._last_purge >= PURGE_EVERY:
            self._last_purge = now
            purged = await self._orchestrator.store.purge(now - self._retention, now)
            if purged:
                log.info("runs.purged", count=purged, retention_days=self._retention.days)

    def close(self) -> None:
        """Stop after the sweep in progress (never cancelled mid-transaction)."""
        self._stopping.set()

    async def run(self) -> None:
        """Sweep every `interval` until `close()`; a failed sweep is logged and retried."""
        while not self._stopping.is_set():
            try:
                await self.sweep_once()
            except Unavailable as exc:
                log.warning("sweep.store_unavailable", error=exc.message)
            except Exception:
                log.exception("sweep.failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval.total_seconds())
