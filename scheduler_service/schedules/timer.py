"""The schedule timer: one loop per scheduler process that wakes when the first schedule is due.

The database is the only state. Each pass claims the due schedules (`ScheduleFirer.
claim_and_fire`, with SKIP LOCKED: replicas waking together split the work, each tick is
processed once) and then reads one value, the earliest `next_due` of all schedules, to know when
to wake next. A pass never re-reads the schedules that are not due, and passes never overlap.
A change made through this process wakes the loop at once (`changed`); one made through another
replica is seen at the next wake-up, at most `poll` later.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

import structlog

from common.clock import Clock
from scheduler_service.schedules.firing import ScheduleFirer
from scheduler_service.schedules.store import ScheduleStore

log = structlog.get_logger(__name__)
#: A claimed firing whose outcome is still unrecorded after this long lost its process.
PENDING_TIMEOUT = timedelta(seconds=60)
#: How often abandoned firings are looked for, and old firings purged.
RECOVER_EVERY = timedelta(seconds=30)
PURGE_EVERY = timedelta(minutes=10)
PURGE_BATCH = 10_000
#: Schedules claimed per transaction.
CLAIM_BATCH = 100
#: The pause before claiming again when due schedules were all held by other replicas.
HELD_PAUSE = 0.05


class ScheduleTimer:
    """Claims due schedules when they are due, recovers abandoned firings, purges old firings."""

    def __init__(
        self,
        store: ScheduleStore,
        firer: ScheduleFirer,
        clock: Clock,
        poll: timedelta,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self.store = store
        self.firer = firer
        self.clock = clock
        self.poll = poll
        self.retention = retention
        #: When the first schedule is due (None: none is), as of the last pass.
        self.next_due: datetime | None = None
        self.passes = 0
        self._pass_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_recover: datetime | None = None
        self._last_purge: datetime | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        log.info("schedules.started", scheduler=self.firer.scheduler_id)

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Stop the loop; a pass in progress records its firings' outcomes (within the drain)."""
        if self._task is None:
            return
        self._stopping.set()
        self._wake.set()
        _done, pending = await asyncio.wait({self._task}, timeout=drain_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    def changed(self, schedule_id: str) -> None:
        """A schedule changed through this process: wake the loop rather than wait for `poll`."""
        del schedule_id  # the pass reads the due time of every schedule anyway
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            # Cleared before the pass: a change made during it wakes the loop again.
            self._wake.clear()
            try:
                delay = self._delay(await self.sync())
            except Exception:
                # A database hiccup must not kill the timer; the pass is tried again after `poll`.
                log.exception("schedules.error")
                delay = self.poll.total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _delay(self, claimed: int) -> float:
        if self.next_due is None:
            return self.poll.total_seconds()
        until_due = (self.next_due - self.clock.now()).total_seconds()
        if until_due <= 0 and not claimed:
            return HELD_PAUSE  # due, but held by another replica's claim: it commits shortly
        return min(self.poll.total_seconds(), max(0.0, until_due))

    async def sync(self) -> int:
        """One pass: claim and fire every due schedule, recover abandoned firings and purge old
        ones when it is time, and read when the next schedule is due. Passes are serialized: a
        pass asked for while another runs waits for it. How many schedules were claimed."""
        async with self._pass_lock:
            self.passes += 1
            claimed = await self._claim_and_fire()
            now = self.clock.now()
            if _time_for(self._last_recover, RECOVER_EVERY, now):
                self._last_recover = now
                await self.firer.recover(PENDING_TIMEOUT)
            if _time_for(self._last_purge, PURGE_EVERY, now):
                self._last_purge = now
                await self.purge(now)
            self.next_due = await self.store.next_due()
            return claimed

    async def _claim_and_fire(self) -> int:
        # Each batch fires while the next is claimed: the first runs start at once, and two
        # replicas waking together take turns at the claims, splitting the due schedules.
        firing: list[asyncio.Task[None]] = []
        claimed = 0
        while True:
            batch = await self.firer.claim(CLAIM_BATCH)
            claimed += len(batch)
            firing.append(asyncio.create_task(self.firer.fire_claimed(batch)))
            if len(batch) < CLAIM_BATCH:
                break
        for result in await asyncio.gather(*firing, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
        return claimed

    async def purge(self, now: datetime) -> int:
        """Delete the firings of ticks older than the retention, in batches; how many."""
        total = 0
        while True:
            purged = await self.store.purge_firings(now - self.retention, PURGE_BATCH)
            total += purged
            if purged < PURGE_BATCH:
                break
        if total:
            log.info("schedules.firings_purged", count=total, retention_days=self.retention.days)
        return total


def _time_for(last: datetime | None, every: timedelta, now: datetime) -> bool:
    return last is None or now - last >= every
