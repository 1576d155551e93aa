"""Quarantine of crawlers that keep losing attempts while connected.

A crawler whose leases expire although its stream stays open takes runs and never works on them
(a bug, or a process pretending to be a crawler): every run it takes waits a whole lease and uses
up an attempt. After `losses` such expiries within `window` it gets no new work for `duration`.
A crawler that was killed is not counted: its stream broke first, and a restarted one connects
afresh.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

import structlog

from common.clock import Clock
from scheduler_service.runs.model import EventKind
from scheduler_service.runs.store import StopKind, Transition

log = structlog.get_logger(__name__)
LOST = "WORKER_LOST"


def lease_losses(transition: Transition) -> list[str]:
    """The crawlers whose attempt's lease expired in `transition` (one entry per attempt)."""
    expired = {
        event.run_id
        for event in transition.events
        if event.kind is EventKind.STATE_CHANGED
        and (event.data.get("error") or {}).get("code") == LOST
        and str(event.data.get("reason", "")).startswith("lease expired")
    }
    return [
        stop.worker_id
        for stop in transition.stops
        if stop.kind is StopKind.ABANDON and stop.ref.run_id in expired
    ]


class Quarantine:
    """Which crawlers are quarantined now (see the module doc)."""

    def __init__(
        self,
        clock: Clock,
        losses: int = 3,
        window: timedelta = timedelta(minutes=10),
        duration: timedelta = timedelta(minutes=5),
    ) -> None:
        self._clock = clock
        self._losses = losses
        self._window = window
        self._duration = duration
        self._recent: dict[str, deque[datetime]] = {}
        self._until: dict[str, datetime] = {}

    def lost(self, worker_id: str) -> None:
        """A connected crawler lost an attempt by letting its lease expire."""
        now = self._clock.now()
        recent = self._recent.setdefault(worker_id, deque())
        recent.append(now)
        while recent and recent[0] <= now - self._window:
            recent.popleft()
        if len(recent) >= self._losses and self._duration > timedelta(0):
            self._until[worker_id] = now + self._duration
            recent.clear()
            log.warning(
                "worker.quarantined",
                worker=worker_id,
                losses=self._losses,
                until=self._until[worker_id].isoformat(),
            )

    def holds(self, worker_id: str) -> bool:
        """Whether `worker_id` must not get new work now."""
        until = self._until.get(worker_id)
        if until is None:
            return False
        if until <= self._clock.now():
            del self._until[worker_id]
            return False
        return True

    def forget(self, worker_id: str) -> None:
        """The crawler's stream ended: its record goes (a restarted crawler starts afresh)."""
        self._recent.pop(worker_id, None)
        self._until.pop(worker_id, None)
