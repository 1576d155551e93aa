"""What another replica's notice does to this process's watchers: events carried by the notice are
handed over without a query; a notice with only their seqs costs one read of the log per run,
whatever the number of local watchers; a read in progress keeps each run's events in order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from scheduler_service.cluster.feed import ClusterFeed
from scheduler_service.cluster.notice import Notice, of_transaction
from scheduler_service.orchestration.broker import EventBroker
from scheduler_service.runs.model import EventKind, RunEvent

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _events(run_id: str, first: int, last: int) -> list[RunEvent]:
    return [
        RunEvent(run_id, seq, NOW, 1, EventKind.STEP_STARTED, {"step": f"s{seq}"})
        for seq in range(first, last + 1)
    ]


class Log:
    """The run's event log, read by the feed; `gate` holds reads until set."""

    def __init__(self, events: list[RunEvent]) -> None:
        self.events = events
        self.reads: list[tuple[str, int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def read(self, run_id: str, after: int) -> list[RunEvent]:
        self.reads.append((run_id, after))
        await self.gate.wait()
        return [e for e in self.events if e.run_id == run_id and e.seq > after]


def _feed(broker: EventBroker, log: Log) -> ClusterFeed:
    async def no_cancels() -> None:
        return None

    return ClusterFeed(broker, log.read, lambda: None, lambda _when: None, no_cancels)


def _seqs(events: list[RunEvent]) -> list[int]:
    return [event.seq for event in events]


async def test_events_carried_by_the_notice_reach_every_watcher_without_a_query() -> None:
    broker, log = EventBroker(), Log([])
    watchers = [broker.subscribe("run_a") for _ in range(3)]
    feed = _feed(broker, log)
    notice = Notice.decode(of_transaction("b", _events("run_a", 1, 2), False).encode())
    feed.notice(notice)
    feed.notice(Notice.decode(of_transaction("b", _events("run_z", 1, 1), False).encode()))
    assert [_seqs(w.drain()) for w in watchers] == [[1, 2]] * 3
    assert log.reads == []  # and nothing of run_z, watched by nobody here
    await feed.close()


async def test_seqs_alone_cost_one_read_whatever_the_watchers() -> None:
    broker, log = EventBroker(), Log(_events("run_a", 1, 3))
    watchers = [broker.subscribe("run_a") for _ in range(3)]
    feed = _feed(broker, log)
    feed.notice(Notice("b", events={"run_a": (1, 3)}))
    await _idle(feed)
    assert [_seqs(w.drain()) for w in watchers] == [[1, 2, 3]] * 3
    assert log.reads == [("run_a", 0)]


async def test_events_handed_over_during_a_read_wait_for_it() -> None:
    broker, log = EventBroker(), Log(_events("run_a", 1, 4))
    watcher = broker.subscribe("run_a")
    feed = _feed(broker, log)
    log.gate.clear()
    feed.notice(Notice("b", events={"run_a": (1, 2)}))
    await asyncio.sleep(0)
    feed.notice(Notice.decode(of_transaction("b", _events("run_a", 3, 4), False).encode()))
    assert watcher.drain() == []  # not ahead of seqs 1-2, still being read
    log.gate.set()
    await _idle(feed)
    assert _seqs(watcher.drain()) == [1, 2, 3, 4]
    assert log.reads == [("run_a", 0)]


async def _idle(feed: ClusterFeed) -> None:
    """Until the feed's reads (its tasks) are done."""
    while feed._reading:
        await asyncio.gather(*feed._reading)
    await feed.close()
