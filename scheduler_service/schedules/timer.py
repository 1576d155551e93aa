"""The schedule timer: one loop per scheduler process that wakes when the first schedule is due.

The database is the only state. Each pass claims the due schedules (`ScheduleFirer.
claim_and_fire`, with SKIP LOCKED: replicas waking together split the work, each tick is
processed once) and then reads one value, the earliest `next_due` of all schedules, to know when
to wake next. A pass never re-reads the schedules that are not due, and passes never overlap.
A change made through this process wakes the loop at once (`changed`); one made through another
replica arrives by its notice on PostgreSQL (`cluster.feed` calls `changed` too) or is seen at the
next wake-up, at most `poll` later. While notices arrive (`live`), that read is only the safety
net and happens every `LIVE_POLL_EVERY` polls; a pass that wakes with nothing due and nothing
changed reads one value (the earliest `next_due`) and claims only if that is due: an idle replica's
timer costs one short read transaction per wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
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
#: While other replicas' schedule changes arrive by notice, every how many polls the timer looks
#: for changes all the same (the safety net for a lost notice).
LIVE_POLL_EVERY = 10


class ScheduleTimer:
    """Claims due schedules when they are due, recovers abandoned firings, purges old firings."""

    def __init__(
        self,
        store: ScheduleStore,
        firer: ScheduleFirer,
        clock: Clock,
        poll: timedelta,
        retention: timedelta = timedelta(days=7),
        live: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.firer = firer
        self.clock = clock
        self.poll = poll
        self.retention = retention
        self._live = live
        #: Something changed since the last claim (or none was made yet): the next pass claims.
        self._changed = True
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

    def changed(self, schedule_id: str = "") -> None:
        """A schedule changed (through this process, or another replica's notice said so), or
        notices may have been missed: wake the loop for a pass that claims, rather than wait."""
        del schedule_id  # the pass reads the due time of every schedule anyway
        self._changed = True
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
        poll = self.poll.total_seconds() * (LIVE_POLL_EVERY if self._live() else 1)
        if self.next_due is None:
            return poll
        until_due = (self.next_due - self.clock.now()).total_seconds()
        if until_due <= 0 and not claimed:
            return HELD_PAUSE  # due, but held by another replica's claim: it commits shortly
        return min(poll, max(0.0, until_due))

    def _due(self) -> bool:
        return self.next_due is not None and self.next_due <= self.clock.now()

    async def sync(self) -> int:
        """One pass: claim and fire every due schedule, recover abandoned firings and purge old
        ones when it is time, and read when the next schedule is due. Passes are serialized: a
        pass asked for while another runs waits for it. How many schedules were claimed."""
        async with self._pass_lock:
            self.passes += 1
            fresh = not (self._changed or self._due())
            if fresh:
                # Woken by the poll: claim only if a change made elsewhere made something due.
                self.next_due = await self.store.next_due()
            claimed = 0
            if self._changed or self._due():
                self._changed, fresh = False, False
                claimed = await self._claim_and_fire()
            await self._upkeep(self.clock.now())
            if not fresh:
                self.next_due = await self.store.next_due()
            return claimed

    async def _upkeep(self, now: datetime) -> None:
        if _time_for(self._last_recover, RECOVER_EVERY, now):
            self._last_recover = now
            await self.firer.recover(PENDING_TIMEOUT)
        if _time_for(self._last_purge, PURGE_EVERY, now):
            self._last_purge = now
            await self.purge(now)

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
