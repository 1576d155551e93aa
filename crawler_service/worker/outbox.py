"""The ordered buffer of reports waiting to be sent to the scheduler.

Putting never blocks, so a step never waits on the network. Reports keep their order, except that an
unsent report put with a `replace_key` already queued (progress of the same attempt and step) is
overwritten in place: the latest progress wins, and it still precedes everything put after the
original. Reports stay buffered while the stream is down and are sent after a reconnect.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Entry(Generic[T]):
    """A queued report: the attempt it belongs to, the report and its coalescing key."""

    ref: Hashable
    item: T
    replace_key: Hashable | None = None


class Outbox(Generic[T]):
    """A FIFO of reports with latest-wins coalescing, for exactly one consumer."""

    def __init__(self) -> None:
        self._entries: deque[Entry[T]] = deque()
        self._replaceable: dict[Hashable, Entry[T]] = {}
        self._in_transit = 0
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        """The number of reports not yet acknowledged as sent (queued or in transit)."""
        return len(self._entries) + self._in_transit

    def put(self, ref: Hashable, item: T, replace_key: Hashable | None = None) -> None:
        """Queue `item` for attempt `ref`; replace an unsent item with the same `replace_key`."""
        if replace_key is not None:
            queued = self._replaceable.get(replace_key)
            if queued is not None:
                queued.item = item
                return
        entry = Entry(ref, item, replace_key)
        self._entries.append(entry)
        if replace_key is not None:
            self._replaceable[replace_key] = entry
        self._changed.set()

    def drop(self, ref: Hashable) -> int:
        """Forget every queued report of attempt `ref`; return how many were dropped."""
        kept = deque(entry for entry in self._entries if entry.ref != ref)
        dropped = len(self._entries) - len(kept)
        self._entries = kept
        self._replaceable = {
            key: entry for key, entry in self._replaceable.items() if entry.ref != ref
        }
        self._changed.set()
        return dropped

    def pending(self, ref: Hashable) -> list[T]:
        """The queued (not in transit) reports of attempt `ref`, in order."""
        return [entry.item for entry in self._entries if entry.ref == ref]

    async def get(self) -> Entry[T]:
        """Take the oldest report; the caller must then `ack` or `requeue` it."""
        while not self._entries:
            self._changed.clear()
            await self._changed.wait()
        entry = self._entries.popleft()
        if entry.replace_key is not None:
            # Once taken, a newer report with the same key must queue behind, not overwrite it.
            self._replaceable.pop(entry.replace_key, None)
        self._in_transit += 1
        return entry

    def ack(self, entry: Entry[T]) -> None:
        """`entry` (from `get`) was sent."""
        self._in_transit -= 1
        self._changed.set()

    def requeue(self, entry: Entry[T]) -> None:
        """`entry` (from `get`) could not be sent: put it back first in line."""
        self._in_transit -= 1
        self._entries.appendleft(entry)
        self._changed.set()

    async def wait_empty(self) -> None:
        """Wait until every report has been sent (or dropped)."""
        while len(self):
            self._changed.clear()
            await self._changed.wait()
