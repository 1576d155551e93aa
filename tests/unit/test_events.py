"""Watch fan-out: every watcher gets every state change; a slow one gets the latest progress."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from scheduler_service.orchestration.broker import EventBroker
from scheduler_service.runs.model import EventKind, RunEvent

T = datetime(2026, 1, 1, tzinfo=UTC)


def event(seq: int, kind: EventKind, step: str = "fetch", run_id: str = "r1") -> RunEvent:
    return RunEvent(run_id, seq, T, 1, kind, {"step": step, "current": seq})


def test_every_watcher_of_a_run_gets_its_events_only() -> None:
    broker = EventBroker()
    a, b = broker.subscribe("r1"), broker.subscribe("r1")
    other = broker.subscribe("r2")
    broker.publish([event(1, EventKind.STATE_CHANGED), event(2, EventKind.STEP_STARTED)])
    assert [e.seq for e in a.drain()] == [1, 2]
    assert [e.seq for e in b.drain()] == [1, 2]
    assert other.drain() == []
    assert broker.watchers == 3
    broker.unsubscribe(a)
    broker.publish([event(3, EventKind.STEP_PROGRESS)])
    assert a.drain() == []
    assert [e.seq for e in b.drain()] == [3]


def test_a_slow_watcher_gets_the_latest_progress_and_every_state_change() -> None:
    broker = EventBroker()
    slow, fast = broker.subscribe("r1"), broker.subscribe("r1")
    published = [
        event(1, EventKind.STEP_STARTED),
        event(2, EventKind.STEP_PROGRESS),
        event(3, EventKind.STEP_PROGRESS),
        event(4, EventKind.STEP_STARTED, step="link"),
        event(5, EventKind.STEP_PROGRESS, step="link"),
        event(6, EventKind.STEP_PROGRESS),
        event(7, EventKind.STEP_FINISHED),
        event(8, EventKind.STATE_CHANGED),
    ]
    for item in published:
        broker.publish([item])
        assert [e.seq for e in fast.drain()] == [item.seq]  # the fast one keeps up
    delivered = [e.seq for e in slow.drain()]
    assert delivered == [1, 4, 5, 6, 7, 8]  # seq jumps over replaced progress, stays ordered
    assert slow.coalesced == {2, 3}


def test_the_mailbox_stays_bounded_under_progress_floods() -> None:
    broker = EventBroker()
    slow = broker.subscribe("r1")
    broker.publish([event(seq, EventKind.STEP_PROGRESS) for seq in range(1, 10_001)])
    assert len(slow) == 1
    assert [e.seq for e in slow.drain()] == [10_000]


async def test_a_quiet_watcher_is_poked_once_a_poll_period() -> None:
    broker = EventBroker()
    # A real timer, a short period: the wait ends without anything published.
    quiet = broker.subscribe("r1", poll=0.01)
    try:
        await asyncio.wait_for(quiet.wait(), 60)
        assert quiet.drain() == []
    finally:
        broker.unsubscribe(quiet)


async def test_the_poll_pokes_only_after_a_period_with_nothing_pushed_and_never_when_live() -> None:
    broker = EventBroker()
    mailbox = broker.subscribe("r1", poll=3600)  # ticked by hand below
    try:
        broker.publish([event(1, EventKind.STEP_STARTED)])
        mailbox.drain()
        mailbox._tick()  # something was pushed in this period: no poke
        assert not mailbox._ready.is_set()
        mailbox._tick()  # a quiet period: poked, the watcher re-reads the log
        assert mailbox._ready.is_set()
        mailbox.drain()
        broker.live = True  # other processes' events are pushed: no poll
        mailbox._tick()
        assert not mailbox._ready.is_set()
    finally:
        broker.unsubscribe(mailbox)
    # Gone with its watcher: no more ticks.
    assert mailbox._timer is None


def test_a_mailbox_without_a_poll_period_needs_no_event_loop() -> None:
    mailbox = EventBroker().subscribe("r1")
    assert mailbox._timer is None
