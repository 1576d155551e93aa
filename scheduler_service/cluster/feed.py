"""What another replica's notice wakes in this process.

- A run became dispatchable there: the dispatcher claims if a local crawler has a free slot.
- A retry was set for later: a timer kicks the dispatcher then.
- A running run's cancellation was requested: the cancels of local crawlers' runs are pushed.
- Events were appended to a run watched here: published to the broker, which fans them out to the
  watchers' mailboxes — straight from the notice when it carries them (no query), else read once
  from the log (whatever the number of local watchers).
- A schedule was created or changed: the schedule timer re-reads when the first one is due.

After every (re)connection of the listener the dispatcher claims once, pending cancels are pushed
and every watcher re-reads the log after its last seq, so a notice missed while not listening
delays nothing. While the listener is down the broker is not `live`: watchers poll slowly on their
own, the sweep looks for cancels and the schedule timer re-reads at its normal poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

import structlog

from common.errors import Unavailable
from scheduler_service.cluster.notice import Notice
from scheduler_service.orchestration.broker import EventBroker
from scheduler_service.runs.model import RunEvent

log = structlog.get_logger(__name__)
ReadEvents = Callable[[str, int], Awaitable[list[RunEvent]]]


class ClusterFeed:
    """The `NoticeHandler` of a scheduler process."""

    def __init__(
        self,
        broker: EventBroker,
        read_events: ReadEvents,
        kick: Callable[[], None],
        wake_at: Callable[[datetime], None],
        push_cancels: Callable[[], Awaitable[None]],
        schedules_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._broker = broker
        self._read_events = read_events
        self._kick = kick
        self._wake_at = wake_at
        self._push_cancels = push_cancels
        self._schedules_changed = schedules_changed
        #: run id -> the highest seq a notice announced, for runs being read now.
        self._wanted: dict[str, int] = {}
        self._reading: set[asyncio.Task[None]] = set()

    def notice(self, notice: Notice) -> None:
        if notice.dispatchable:
            self._kick()
        if notice.wake_at is not None:
            self._wake_at(notice.wake_at)
        if notice.overflow:
            self._broker.poke_all()
        if notice.cancels:
            self._spawn(self._cancels(), "cluster-cancels")
        if notice.schedules:
            self._schedules_changed()
        if notice.inline:
            self._handed_over(notice.inline)
        else:
            for run_id, (first, last) in notice.events.items():
                self._announced(run_id, first, last)

    def resynced(self) -> None:
        self._broker.live = True
        self._kick()
        self._broker.poke_all()
        self._spawn(self._cancels(), "cluster-cancels")
        self._schedules_changed()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)

    async def _cancels(self) -> None:
        try:
            await self._push_cancels()
        except Unavailable as exc:
            # The sweep pushes it while not live; a live listener's next resync does too.
            log.warning("cluster.cancels_failed", error=exc.message)

    def lost(self) -> None:
        self._broker.live = False
        # Watchers waiting without a timeout start their slow poll; the timer its normal one.
        self._broker.poke_all()
        self._schedules_changed()

    def _handed_over(self, events: tuple[RunEvent, ...]) -> None:
        """Publish the events a notice carried. A run being read from the log meanwhile gets them
        from that read instead (the read goes on up to the highest seq announced), so each run's
        events reach the broker in seq order; a watcher fills any other gap from the log."""
        fresh = []
        for event in events:
            if not self._broker.watched(event.run_id):
                continue
            if event.run_id in self._wanted:
                self._wanted[event.run_id] = max(self._wanted[event.run_id], event.seq)
            elif event.seq > (self._broker.latest(event.run_id) or 0):
                fresh.append(event)
        self._broker.publish(fresh)

    def _announced(self, run_id: str, first: int, last: int) -> None:
        if not self._broker.watched(run_id):
            return
        known = self._broker.latest(run_id)
        if known is not None and known >= last:
            return
        reading = run_id in self._wanted
        self._wanted[run_id] = max(last, self._wanted.get(run_id, last))
        if not reading:
            after = known if known is not None else first - 1
            self._spawn(self._read(run_id, after), f"watch-feed-{run_id}")

    async def _read(self, run_id: str, after: int) -> None:
        """Read the run's new events until the highest announced seq, one read at a time."""
        try:
            while self._broker.watched(run_id) and after < self._wanted[run_id]:
                events = await asyncio.shield(self._read_events(run_id, after))
                if not events:
                    break
                self._broker.publish(events)
                after = max(after, events[-1].seq, self._broker.latest(run_id) or 0)
        except Unavailable as exc:
            log.warning("cluster.feed_read_failed", run_id=run_id, error=exc.message)
            self._broker.poke(run_id)
        finally:
            self._wanted.pop(run_id, None)

    async def close(self) -> None:
        for task in list(self._reading):
            task.cancel()
        await asyncio.gather(*self._reading, return_exceptions=True)
