"""In-process fan-out of run events to watchers.

Events are published after they are stored. Each watcher has its own mailbox: a slow watcher never
slows the run or other watchers. Its undelivered progress events of a step are replaced by the
newest one (its seq jumps; the replaced seqs are remembered so the gap is known to be deliberate),
while state changes and step start/finish events are never dropped.

Events of other scheduler processes reach the broker through `cluster.feed` (PostgreSQL
LISTEN/NOTIFY): while it is `live`, a quiet watcher waits without polling the database. While it
is not, a mailbox given a `poll` period pokes its watcher once a period in which nothing was
pushed to it (the watcher then re-reads the log): one timer per mailbox and period, not a timeout
armed and cancelled at every wait (with a thousand watchers of a busy run, that was ten thousand
timers a second).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from scheduler_service.runs.model import EventKind, RunEvent


class Mailbox:
    """The undelivered events of one watcher."""

    def __init__(
        self, run_id: str, poll: float | None = None, polling: Callable[[], bool] = bool
    ) -> None:
        self.run_id = run_id
        self._items: deque[RunEvent] = deque()
        self._progress: dict[str, RunEvent] = {}
        #: Seqs of progress events replaced before delivery (deliberate gaps).
        self.coalesced: set[int] = set()
        self._ready = asyncio.Event()
        #: Whether anything was pushed since the last poll tick.
        self._pushed = False
        self._poll = poll
        self._polling = polling
        self._timer: asyncio.TimerHandle | None = None
        if poll is not None:
            self._timer = asyncio.get_running_loop().call_later(poll, self._tick)

    def _tick(self) -> None:
        """Once a poll period: poke the watcher if nothing was pushed to it meanwhile and the
        broker is not fed live."""
        assert self._poll is not None
        if not self._pushed and self._polling():
            self._ready.set()
        self._pushed = False
        self._timer = asyncio.get_running_loop().call_later(self._poll, self._tick)

    def close(self) -> None:
        """Stop the poll ticks (the watcher went away)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def push(self, event: RunEvent) -> None:
        self._pushed = True
        if event.kind is EventKind.STEP_PROGRESS:
            older = self._progress.get(event.step)
            if older is not None:
                self._items.remove(older)
                self.coalesced.add(older.seq)
            self._progress[event.step] = event
        self._items.append(event)
        self._ready.set()

    def poke(self) -> None:
        """Wake the watcher with nothing to deliver: it re-reads the log after its last seq."""
        self._ready.set()

    def drain(self) -> list[RunEvent]:
        """Everything undelivered, in seq order."""
        items = list(self._items)
        self._items.clear()
        self._progress.clear()
        self._ready.clear()
        return items

    async def wait(self) -> None:
        """Until an event is pushed, or the watcher is poked (a poll tick, the listener's state
        changed)."""
        if self._items:
            return
        await self._ready.wait()

    def __len__(self) -> int:
        return len(self._items)


class EventBroker:
    """Delivers published events to the mailboxes of their run's watchers."""

    def __init__(self) -> None:
        self._mailboxes: dict[str, set[Mailbox]] = {}
        #: run id -> the highest seq published, for watched runs.
        self._latest: dict[str, int] = {}
        #: Whether other processes' events are pushed here as they are written (the cluster
        #: listener is up); if not, quiet watchers poll the log themselves.
        self.live = False

    def subscribe(self, run_id: str, poll: float | None = None) -> Mailbox:
        """A mailbox for a watcher of `run_id`; with `poll` (seconds), poked once a poll period
        in which nothing reached it while the broker is not `live`."""
        mailbox = Mailbox(run_id, poll, lambda: not self.live)
        self._mailboxes.setdefault(run_id, set()).add(mailbox)
        return mailbox

    def unsubscribe(self, mailbox: Mailbox) -> None:
        mailbox.close()
        boxes = self._mailboxes.get(mailbox.run_id)
        if boxes is None:
            return
        boxes.discard(mailbox)
        if not boxes:
            del self._mailboxes[mailbox.run_id]
            self._latest.pop(mailbox.run_id, None)

    def publish(self, events: list[RunEvent]) -> None:
        for event in events:
            boxes = self._mailboxes.get(event.run_id)
            if not boxes:
                continue
            if event.seq > self._latest.get(event.run_id, 0):
                self._latest[event.run_id] = event.seq
            for mailbox in boxes:
                mailbox.push(event)

    def watched(self, run_id: str) -> bool:
        return run_id in self._mailboxes

    def latest(self, run_id: str) -> int | None:
        """The highest seq of the run published since it was first watched (None: none yet)."""
        return self._latest.get(run_id)

    def poke(self, run_id: str) -> None:
        for mailbox in self._mailboxes.get(run_id, ()):
            mailbox.poke()

    def poke_all(self) -> None:
        for boxes in self._mailboxes.values():
            for mailbox in boxes:
                mailbox.poke()

    @property
    def watchers(self) -> int:
        return sum(len(boxes) for boxes in self._mailboxes.values())
