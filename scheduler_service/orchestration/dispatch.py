"""Push dispatch: pending runs go to connected crawlers with free slots the moment they appear.

Each crawler holds one `Connect` stream; its `WorkerConn` has an outbox the stream drains. The
dispatcher wakes on `kick()` (a run became dispatchable, a slot freed, a crawler connected, or the
sweep), claims runs in the store and pushes assignments. No polling on the hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from scheduler_service.runs.model import AttemptRef, Run
from scheduler_service.runs.store import StopRequest

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class HeartbeatAcked:
    renewed: list[AttemptRef]
    lease_expires_at: datetime


@dataclass(frozen=True)
class Welcome:
    reattached: list[AttemptRef]
    abandoned: list[AttemptRef]
    lease_expires_at: datetime


#: What a crawler's stream sends down: an assignment (the claimed run), a stop, an ack.
Outgoing = Run | StopRequest | HeartbeatAcked | Welcome


@dataclass(eq=False)
class WorkerConn:
    """One connected crawler, as this scheduler process sees it."""

    id: str
    slots: int
    version: str
    connected_at: datetime
    last_heartbeat_at: datetime
    #: run id -> attempt of the assignments it holds.
    running: dict[str, int] = field(default_factory=dict)
    draining: bool = False
    #: The WorkerService protocol version the crawler speaks.
    protocol_version: int = 1
    #: Slots held for a claim in progress (so two claims never take the same last slot).
    reserved: int = 0
    outbox: asyncio.Queue[Outgoing | None] = field(default_factory=asyncio.Queue)

    @property
    def free_slots(self) -> int:
        """Slots holding no assignment (none while draining): what ListWorkers and the metrics
        report. A claim in progress is no assignment: most find nothing to claim."""
        return 0 if self.draining else max(0, self.slots - len(self.running))

    @property
    def claimable_slots(self) -> int:
        """Free slots not held for a claim in progress (the dispatcher's view)."""
        return max(0, self.free_slots - self.reserved)

    def send(self, item: Outgoing) -> None:
        self.outbox.put_nowait(item)

    def close(self) -> None:
        self.outbox.put_nowait(None)


class Dispatcher:
    """Assigns dispatchable runs to connected crawlers."""

    def __init__(
        self,
        claim: Callable[[str], Awaitable[Run | None]],
        excluded: Callable[[str], bool] = lambda _worker_id: False,
    ) -> None:
        self._claim = claim
        #: Crawlers that get no new work now (the quarantine).
        self._excluded = excluded
        self._workers: dict[str, WorkerConn] = {}
        #: Runs claimed for a crawler whose stream broke during the claim, by crawler id: handed
        #: to it when it reconnects (re-attached like its in-flight attempts).
        self._undelivered: dict[str, dict[str, Run]] = {}
        self._wake = asyncio.Event()
        self._closing = False

    @property
    def workers(self) -> list[WorkerConn]:
        return list(self._workers.values())

    def add(self, conn: WorkerConn) -> None:
        previous = self._workers.get(conn.id)
        if previous is not None and previous is not conn:
            # The crawler reconnected before its old stream was noticed dead.
            previous.close()
        self._workers[conn.id] = conn
        # Claimed while it was re-attaching: still its own unless the claim preceded the
        # re-attach (then the stale attempt is refused at its first report, like any other).
        for run in self.take_undelivered(conn.id):
            self._deliver(conn, run)
        self.kick()

    def remove(self, conn: WorkerConn) -> None:
        if self._workers.get(conn.id) is conn:
            del self._workers[conn.id]

    def take_undelivered(self, worker_id: str) -> list[Run]:
        """The runs claimed for `worker_id` that never reached it (they leave the dispatcher)."""
        return list(self._undelivered.pop(worker_id, {}).values())

    def get(self, worker_id: str) -> WorkerConn | None:
        return self._workers.get(worker_id)

    def kick(self) -> None:
        self._wake.set()

    def stop(self, request: StopRequest) -> bool:
        """Push a stop to the crawler holding the attempt, if it is connected here."""
        conn = self._workers.get(request.worker_id)
        if conn is None:
            return False
        conn.send(request)
        if (
            request.kind == "abandon"
            and conn.running.get(request.ref.run_id) == request.ref.attempt
        ):
            del conn.running[request.ref.run_id]
            self.kick()
        return True

    def release(self, worker_id: str, ref: AttemptRef, *, kick: bool = True) -> None:
        """The attempt ended: free its slot (and dispatch to it, with `kick`)."""
        conn = self._workers.get(worker_id)
        if conn is not None and conn.running.get(ref.run_id) == ref.attempt:
            del conn.running[ref.run_id]
            if kick:
                self.kick()

    def close(self) -> None:
        """Stop the loop after the claim in progress (never cancelled mid-transaction)."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        """The dispatch loop (a background task), until `close()`."""
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            try:
                await self._dispatch()
            except Exception:
                log.exception("dispatch.failed")
                await asyncio.sleep(0.5)
                self.kick()

    @contextmanager
    def reserve(self) -> Iterator[WorkerConn | None]:
        """The connected crawler with the most free slots, one of them held for the block."""
        candidates = [
            c for c in self._workers.values() if c.claimable_slots > 0 and not self._excluded(c.id)
        ]
        conn = max(candidates, key=lambda c: c.claimable_slots, default=None)
        if conn is None:
            yield None
            return
        conn.reserved += 1
        try:
            yield conn
        finally:
            conn.reserved -= 1

    def assign(self, conn: WorkerConn, run: Run) -> None:
        """Push a run claimed for `conn` down its stream, or the crawler's newer stream if it
        reconnected during the claim (the run is its: the lease names the crawler, not a stream)."""
        current = self._workers.get(conn.id)
        if current is None:
            # Gone while we claimed: kept for its reconnection (else its lease expires).
            self._undelivered.setdefault(conn.id, {})[run.id] = run
            log.info("dispatch.worker_gone", run_id=run.id, attempt=run.attempt, worker=conn.id)
            return
        self._deliver(current, run)

    def _deliver(self, conn: WorkerConn, run: Run) -> None:
        conn.running[run.id] = run.attempt
        conn.send(run)
        log.info("run.dispatched", run_id=run.id, attempt=run.attempt, worker=conn.id)

    async def _dispatch(self) -> None:
        while not self._closing:
            with self.reserve() as conn:
                if conn is None:
                    return
                run = await self._claim(conn.id)
            if run is None:
                return
            self.assign(conn, run)
