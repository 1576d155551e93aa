"""In-process fan-out of run events to watchers.

Events are published after they are stored. Each watcher has its own mailbox: a slow watcher never
slows the run or other watchers. Its undelivered progress events of a step are replaced by the
newest one (its seq jumps; the replaced seqs are remembered so the gap is known to be deliberate),
while state changes and step start/finish events are never dropped.

Events of other scheduler processes reach the broker through `cluster.feed` (PostgreSQL
LISTEN/NOTIFY): while it is `live`, a quiet watcher waits without polling the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from scheduler_service.runs.model import EventKind, RunEvent


class Mailbox:
    """The undelivered events of one watcher."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._items: deque[RunEvent] = deque()
        self._progress: dict[str, RunEvent] = {}
        #: Seqs of progress events replaced before delivery (deliberate gaps).
        self.coalesced: set[int] = set()
        self._ready = asyncio.Event()

    def push(self, event: RunEvent) -> None:
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

    async def wait(self, timeout: float | None) -> None:  # noqa: ASYNC109 - a poll period
        """Until an event is pushed (or `timeout` seconds pass)."""
        if self._items:
            return
        # asyncio.timeout, not wait_for: wait_for wraps the wait in a new task per call, which
        # dominated the fan-out cost with a thousand watchers.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
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

    def subscribe(self, run_id: str) -> Mailbox:
        mailbox = Mailbox(run_id)
        self._mailboxes.setdefault(run_id, set()).add(mailbox)
        return mailbox

    def unsubscribe(self, mailbox: Mailbox) -> None:
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
