"""What one committed write transaction tells the other scheduler replicas: one NOTIFY on one
channel, sent inside the transaction (PostgreSQL delivers it only if the transaction commits, in
commit order).

The payload is compact JSON: the sending process (a replica ignores its own notices: it already
acted on the transition in process), whether a run became dispatchable, the earliest retry time
set, whether a running run's cancellation was requested, whether a schedule was created or changed
(other replicas' schedule timers re-read when the first one is due), and the (run, first seq, last
seq) of the events appended — with the events themselves when they fit (`inline`), so a replica
whose watchers follow the run hands them over without reading the log. A payload that would pass
PostgreSQL's 8000-byte limit carries the spans only, and past that drops the events and says so
(`overflow`): listeners then read the spans, or catch up every watched run, from the log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler_service.runs.model import EventKind, RunEvent

CHANNEL = "ghpulse_runs"
#: PostgreSQL refuses payloads of 8000 bytes and more; leave room for the rest of the notice.
MAX_PAYLOAD = 7900
#: A cluster wake-up sent alone. Parameters: channel, payload.
NOTIFY = text("SELECT pg_notify(:channel, :payload)")


@dataclass(frozen=True)
class Notice:
    sender: str
    dispatchable: bool = False
    wake_at: datetime | None = None
    #: run id -> (first seq, last seq) appended by the transaction.
    events: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Too many events to list: every watched run may have new ones.
    overflow: bool = False
    #: A running run's cancellation was requested: its crawler's replica pushes the cancel.
    cancels: bool = False
    #: A schedule was created or changed: its next due time may now be the earliest.
    schedules: bool = False
    #: The appended events themselves, in seq order per run (empty: too big to carry; read the
    #: `events` spans from the log).
    inline: tuple[RunEvent, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.dispatchable
            or self.wake_at
            or self.events
            or self.overflow
            or self.cancels
            or self.schedules
        )

    def encode(self) -> str:
        payload: dict[str, Any] = {"s": self.sender}
        if self.dispatchable:
            payload["d"] = 1
        if self.wake_at is not None:
            payload["w"] = self.wake_at.isoformat()
        if self.overflow:
            payload["o"] = 1
        if self.cancels:
            payload["c"] = 1
        if self.schedules:
            payload["h"] = 1
        attempts: list[dict[str, Any]] = []
        if self.inline:
            attempts.append({**payload, "v": [_event_item(event) for event in self.inline]})
        if self.events:
            spans = [[run, first, last] for run, (first, last) in self.events.items()]
            attempts.append({**payload, "e": spans})
        for attempt in attempts:
            encoded = json.dumps(attempt, separators=(",", ":"))
            if len(encoded.encode()) <= MAX_PAYLOAD:
                return encoded
        if attempts:
            payload["o"] = 1
        return json.dumps(payload, separators=(",", ":"))

    @staticmethod
    def prefix_of(sender: str) -> str:
        """How every encoded notice of `sender` begins (the sender is encoded first)."""
        return json.dumps({"s": sender}, separators=(",", ":"))[:-1] + ","

    @classmethod
    def decode(cls, payload: str) -> Notice:
        """The notice in `payload`; anything unreadable is an overflow notice (catch up)."""
        try:
            data = json.loads(payload)
            wake = data.get("w")
            inline = tuple(_event_of(item) for item in data.get("v", ()))
            return cls(
                sender=str(data["s"]),
                dispatchable=bool(data.get("d")),
                wake_at=datetime.fromisoformat(wake) if wake else None,
                events=_spans(inline)
                or {str(r): (int(f), int(last)) for r, f, last in data.get("e", ())},
                overflow=bool(data.get("o")),
                cancels=bool(data.get("c")),
                schedules=bool(data.get("h")),
                inline=inline,
            )
        except (ValueError, KeyError, TypeError):
            return cls(sender="", dispatchable=True, overflow=True, cancels=True, schedules=True)


def of_transaction(
    sender: str, events: list[RunEvent], dispatchable: bool, cancels: bool = False
) -> Notice:
    """The notice of a transaction that appended `events`."""
    wake: datetime | None = None
    for event in events:
        retry_at = event.data.get("retry_at") if event.kind is EventKind.STATE_CHANGED else None
        if retry_at:
            when = datetime.fromisoformat(retry_at)
            wake = when if wake is None else min(wake, when)
    return Notice(sender, dispatchable, wake, _spans(events), cancels=cancels, inline=tuple(events))


def _spans(events: Sequence[RunEvent]) -> dict[str, tuple[int, int]]:
    spans: dict[str, tuple[int, int]] = {}
    for event in events:
        first, _last = spans.get(event.run_id, (event.seq, event.seq))
        spans[event.run_id] = (min(first, event.seq), event.seq)
    return spans


def _event_item(event: RunEvent) -> list[Any]:
    return [
        event.run_id,
        event.seq,
        event.time.isoformat(),
        event.attempt,
        event.kind.value,
        event.data,
    ]


def _event_of(item: list[Any]) -> RunEvent:
    run_id, seq, time, attempt, kind, data = item
    return RunEvent(
        str(run_id), int(seq), datetime.fromisoformat(time), int(attempt), EventKind(kind), data
    )


class Notifier:
    """Sends the notice of each write transaction of this process (PostgreSQL only)."""

    def __init__(self, sender: str | None = None) -> None:
        #: Names this process in its notices.
        self.sender = sender or uuid.uuid4().hex[:12]

    def payload(self, events: list[RunEvent], dispatchable: bool, cancels: bool) -> str | None:
        """The NOTIFY payload of a write transaction (sent on `CHANNEL` in it), or None if it did
        nothing the others care about."""
        notice = of_transaction(self.sender, events, dispatchable, cancels)
        return None if notice.empty else notice.encode()

    async def schedules_changed(self, conn: AsyncConnection) -> None:
        """The NOTIFY of a transaction on `conn` that created or changed a schedule."""
        payload = Notice(self.sender, schedules=True).encode()
        await conn.execute(NOTIFY, {"channel": CHANNEL, "payload": payload})
