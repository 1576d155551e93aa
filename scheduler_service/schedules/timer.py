"""The schedule timer: APScheduler 3 wakes this process when a schedule's next tick is due.

APScheduler is only the alarm clock. Its job store is in memory and per process, so it knows
nothing durable: every wake-up goes through `ScheduleFirer.process`, which reads the schedule and
the firings table, and the firings table's unique key decides which process fires a tick. A
periodic sync re-reads every schedule, so a change made through any replica (or a schedule created
there) re-arms this process's timers within `poll` seconds, without a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from common.clock import Clock
from scheduler_service.schedules.errors import ScheduleNotFound
from scheduler_service.schedules.firing import ScheduleFirer
from scheduler_service.schedules.model import Schedule
from scheduler_service.schedules.store import ScheduleStore

log = structlog.get_logger(__name__)
_SYNC_JOB = "schedules-sync"
#: A claimed firing whose outcome is still unrecorded after this long lost its process.
PENDING_TIMEOUT = timedelta(seconds=60)
_PAGE = 500


class ScheduleTimer:
    """Keeps one APScheduler date job per active schedule, armed at its next due time."""

    def __init__(
        self, store: ScheduleStore, firer: ScheduleFirer, clock: Clock, poll: timedelta
    ) -> None:
        self.store = store
        self.firer = firer
        self.clock = clock
        self.poll = poll
        self._scheduler: AsyncIOScheduler | None = None
        #: schedule id -> (version, due time) as last armed.
        self._armed: dict[str, tuple[int, datetime | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
        self._scheduler.add_job(
            self._wake_sync,
            IntervalTrigger(seconds=self.poll.total_seconds(), timezone=UTC),
            id=_SYNC_JOB,
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        self._scheduler.start()
        log.info("schedules.started", scheduler=self.firer.scheduler_id)

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Stop the timer, then let firings in progress record their outcome."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=drain_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def changed(self, schedule_id: str) -> None:
        """A schedule changed through this process: re-arm it now rather than at the next sync."""
        if self._scheduler is None:
            return  # not started: the first sync arms every schedule
        self._armed.pop(schedule_id, None)
        self._spawn(self._process_id(schedule_id))

    # -- APScheduler jobs: they only spawn tracked tasks, so stop() can drain them -------------

    async def _wake_sync(self) -> None:
        self._spawn(self.sync())

    async def _wake(self, schedule_id: str) -> None:
        self._spawn(self._process_id(schedule_id))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            # A database hiccup must not kill the timer; the next sync tries again.
            log.exception("schedules.error")

    # -- the work ------------------------------------------------------------------------------

    async def sync(self) -> None:
        """Re-read every schedule; process those new, changed or due; forget deleted ones; finish
        firings abandoned by dead processes."""
        seen: set[str] = set()
        after = ""
        while True:
            page = await self.store.list_page(after, _PAGE)
            for schedule in page:
                seen.add(schedule.id)
                if self._needs_processing(schedule):
                    await self._process(schedule)
            if len(page) < _PAGE:
                break
            after = page[-1].id
        for gone in set(self._armed) - seen:
            self._disarm(gone)
        await self.firer.recover(PENDING_TIMEOUT)

    def _needs_processing(self, schedule: Schedule) -> bool:
        armed = self._armed.get(schedule.id)
        if armed is None or armed[0] != schedule.version:
            return True
        due = armed[1]
        return due is not None and due <= self.clock.now()

    async def _process_id(self, schedule_id: str) -> None:
        try:
            schedule = await self.store.get(schedule_id)
        except ScheduleNotFound:
            self._disarm(schedule_id)
            return
        await self._process(schedule)

    async def _process(self, schedule: Schedule) -> None:
        lock = self._locks.setdefault(schedule.id, asyncio.Lock())
        async with lock:
            settled = await self.firer.process(schedule)
            self._arm(schedule, settled.next_due)

    def _arm(self, schedule: Schedule, due: datetime | None) -> None:
        self._armed[schedule.id] = (schedule.version, due)
        if self._scheduler is None:
            return
        if due is None:
            self._remove_job(schedule.id)
            return
        # APScheduler runs on the wall clock; the injected clock decides how far away `due` is.
        delay = max(timedelta(0), due - self.clock.now())
        self._scheduler.add_job(
            self._wake,
            DateTrigger(run_date=datetime.now(UTC) + delay, timezone=UTC),
            args=[schedule.id],
            id=f"schedule:{schedule.id}",
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )

    def _disarm(self, schedule_id: str) -> None:
        self._armed.pop(schedule_id, None)
        self._locks.pop(schedule_id, None)
        self._remove_job(schedule_id)

    def _remove_job(self, schedule_id: str) -> None:
        if self._scheduler is not None and self._scheduler.get_job(f"schedule:{schedule_id}"):
            self._scheduler.remove_job(f"schedule:{schedule_id}")
