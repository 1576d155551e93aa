"""Group commit: concurrent TriggerRuns written together, one transaction per flush.

A trigger alone costs a transaction — a hand-off to a database thread, a BEGIN, a COMMIT (an fsync
on SQLite, a round trip and a WAL flush on PostgreSQL) — for two or three statements. Triggers
that arrive while the writer is busy wait in one queue, and the next flush writes up to
`MAX_BATCH` of them in one transaction, sorted by concurrency key (so two flushes running at once
on PostgreSQL take the keys' locks in one order). Each caller still gets its own outcome: its run
is inserted with `INSERT … ON CONFLICT DO NOTHING RETURNING` (a conflict with the key's active
run, even one inserted earlier in the same batch, is an answer, not an error that ends the
transaction), and a refusal (REJECT, a request_id reused for another request) is that caller's
alone. No caller is answered before the batch commits. A batch that fails answers every caller
UNAVAILABLE, after its rollback: nothing of it is stored. A race with another transaction on a
unique key or a deadlock (PostgreSQL) rolls the batch back and writes its triggers one by one,
as without group commit.

Why it cannot hang: a flush is an ordinary call in the writer threads' normal lane (crawler
lifecycle writes, in the urgent lane, still go first); it takes its batch under a lock, never
waits for the event loop, and answers every caller of its batch in a `finally`. At most
`flushes` flushes are queued or running at once (SQLite: one; PostgreSQL: a few, leaving the
other threads to crawler writes and reads, and letting batches grow while they run); a flush
that leaves triggers behind queues itself again, behind the urgent lane's work. The
queue is bounded (a caller past `MAX_WAITING` is answered UNAVAILABLE at once), and closing
answers whatever is still waiting UNAVAILABLE.

A flush's plain triggers (no free slot to claim for, no children to expand: most of a flood) and a
schedule tick's runs (`RunStore.create_runs`, `create_many`, written by the one caller that has
them all) are written as one batch (`create_triggers`), each run stamped with its own trigger's
time. The common case costs a handful of statements for the whole batch, not several per run: the
request ids are read in one statement and written in one (`creation.Keys`), and the runs whose
concurrency key is free are inserted in one multi-row `INSERT … ON CONFLICT DO NOTHING`; only a
trigger meeting an active run (or an idempotent repeat) takes the one-run path of `creation`.
A database error (PostgreSQL: a race lost to another process on a key or a request id) aborts
the transaction; the store then runs the batch again `isolated`: each trigger alone, in a
savepoint, retried.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError

from common.errors import GhpulseError, Unavailable
from scheduler_service.db.models import ACTIVE_SLOT
from scheduler_service.errors import SchedulerError
from scheduler_service.runs.model import NewRun, RunEvent
from scheduler_service.runs.sql import creation
from scheduler_service.runs.sql import statements as q
from scheduler_service.runs.sql import transitions as t
from scheduler_service.runs.sql.claiming import Trigger, create_and_claim
from scheduler_service.runs.sql.lanes import Lanes
from scheduler_service.runs.sql.threads import RETRY_AFTER, reconnecting
from scheduler_service.runs.store import Created, Transition

log = structlog.get_logger(__name__)
#: Triggers written in one transaction, at most.
MAX_BATCH = 50
#: Triggers waiting for a flush, at most; more are answered UNAVAILABLE.
MAX_WAITING = 10_000
#: PostgreSQL's deadlock_detected and serialization_failure: the batch is written one by one.
_RACES = {"40P01", "40001"}

Outcome = Created | BaseException


class Writer(Protocol):
    """What a flush needs of the store."""

    def transaction(self, now: datetime) -> AbstractContextManager[t.Tx]: ...

    def create_now(self, trigger: Trigger) -> Created: ...


@dataclass(frozen=True)
class _Waiting:
    trigger: Trigger
    future: Future[Created]

    @property
    def order(self) -> tuple[str, str]:
        return (self.trigger.new.concurrency_key, self.trigger.new.request_id)


def _unavailable(why: str = "the run store is unavailable; retry") -> Unavailable:
    return Unavailable(why, retry_after=RETRY_AFTER)


class GroupCommit:
    """The queue of triggers waiting for a flush on `lanes`, written by `writer`."""

    def __init__(
        self,
        writer: Writer,
        lanes: Lanes,
        flushes: int = 1,
        max_batch: int = MAX_BATCH,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self._writer = writer
        self._lanes = lanes
        self._max_flushes = flushes
        self._max_batch = max_batch
        self._max_waiting = max_waiting
        self._lock = threading.Lock()
        self._waiting: deque[_Waiting] = deque()
        #: Flushes queued in the lanes or running, at most `flushes`.
        self._flushes = 0
        self._closed = False

    async def create(self, trigger: Trigger) -> Created:
        """`RunStore.create_run`, answered once the batch it was written in has committed."""
        return await asyncio.wrap_future(self._submit(trigger))

    def close(self) -> None:
        """Accept no more triggers (those waiting are still flushed, or answered by `fail`)."""
        with self._lock:
            self._closed = True

    def fail(self) -> None:
        """Answer every trigger still waiting UNAVAILABLE (the writer threads are gone)."""
        with self._lock:
            left = list(self._waiting)
            self._waiting.clear()
        for waiting in left:
            _settle(waiting.future, _unavailable("the scheduler is shutting down; retry"))

    def _submit(self, trigger: Trigger) -> Future[Created]:
        future: Future[Created] = Future()
        with self._lock:
            if self._closed:
                raise _unavailable("the scheduler is shutting down; retry")
            if len(self._waiting) >= self._max_waiting:
                raise _unavailable("too many triggers waiting for the run store; retry")
            self._waiting.append(_Waiting(trigger, future))
            start = self._flushes < self._max_flushes
            if start:
                self._flushes += 1
        if start:
            self._queue_flush()
        return future

    def _queue_flush(self) -> None:
        try:
            self._lanes.submit(self._flush)
        except RuntimeError:
            # The writer threads are shut down: nothing will flush what waits.
            with self._lock:
                self._flushes -= 1
            self.fail()

    def _flush(self) -> None:
        """On a writer thread: write one batch; then queue this flush again (behind the urgent
        lane's work) while triggers are left."""
        try:
            batch = self._take()
            if batch:
                self._write(batch)
        finally:
            with self._lock:
                more = bool(self._waiting)
                if not more:
                    self._flushes -= 1
            if more:
                self._queue_flush()

    def _take(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        with self._lock:
            while self._waiting and len(batch) < self._max_batch:
                waiting = self._waiting.popleft()
                # A caller that went away before its flush is not written.
                if waiting.future.set_running_or_notify_cancel():
                    batch.append(waiting)
        return batch

    def _write(self, batch: list[_Waiting]) -> None:
        outcomes: list[Outcome] = []
        try:
            outcomes = reconnecting(lambda: self._transaction(batch))
        except DBAPIError as exc:
            if not _race(exc):
                log.warning("store.batch_failed", size=len(batch), error=_first_line(exc))
                return
            log.info("store.batch_alone", size=len(batch), error=_first_line(exc))
            outcomes = [self._alone(waiting.trigger) for waiting in batch]
        except Exception:
            log.exception("store.batch_failed", size=len(batch))
        finally:
            # Every caller is answered, whatever happened: UNAVAILABLE if its outcome is unknown.
            for i, waiting in enumerate(batch):
                _settle(waiting.future, outcomes[i] if i < len(outcomes) else _unavailable())

    def _transaction(self, batch: list[_Waiting]) -> list[Outcome]:
        """Write `batch` in one transaction; each trigger's outcome, known once it committed."""
        outcomes: dict[int, Outcome] = {}
        ordered = sorted(batch, key=lambda waiting: waiting.order)
        plain = [waiting for waiting in ordered if _plain(waiting.trigger)]
        with self._writer.transaction(ordered[0].trigger.now) as tx:
            if len(plain) > 1:
                # The common case: their runs in one multi-row INSERT, their request ids read
                # in one statement and written in one (see `create_triggers`).
                created = create_triggers(tx, [waiting.trigger for waiting in plain])
                for waiting, outcome in zip(plain, created, strict=True):
                    outcomes[id(waiting)] = outcome
            for waiting in ordered:
                if id(waiting) in outcomes:
                    continue
                part = t.Tx(tx.conn, waiting.trigger.now, tx.retry)
                try:
                    outcomes[id(waiting)] = create_and_claim(part, waiting.trigger)
                except SchedulerError as exc:
                    # Refused before writing anything of its own: that caller's answer alone.
                    outcomes[id(waiting)] = exc
                    continue
                tx.absorb(part)
        return [outcomes[id(waiting)] for waiting in batch]

    def _alone(self, trigger: Trigger) -> Outcome:
        try:
            return self._writer.create_now(trigger)
        except DBAPIError as exc:
            log.warning("store.unavailable", error=_first_line(exc))
            return _unavailable()
        except Exception as exc:
            return exc


def _plain(trigger: Trigger) -> bool:
    """Whether `trigger` only creates its run (no slot to claim for, no children to expand)."""
    return trigger.claim is None and not creation.is_expanded_parent(trigger.new)


def _race(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    return isinstance(exc, IntegrityError) or code in _RACES


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig or exc).splitlines()[0]


def _settle(future: Future[Created], outcome: Outcome) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


# -- a schedule tick's runs, written by one caller ----------------------------------------

#: Passes over a trigger whose savepoint the database refused, when isolated.
_RETRIES = 3
_CONTENDED = timedelta(seconds=1)
Fresh = tuple[t.Row, RunEvent]


def create_many(
    tx: t.Tx, news: Sequence[NewRun], ttl: timedelta, *, isolated: bool
) -> list[Created | GhpulseError]:
    """`creation.create` for each of `news` in the one transaction (see the module docstring):
    per trigger its result, or the error it alone was refused with (a conflict, an idempotency
    mismatch: refusals write nothing that matters)."""
    if isolated:
        results: list[Created | GhpulseError] = []
        dispatchable = False
        for new in news:
            results.append(_create_alone(tx, new, ttl))
            dispatchable = dispatchable or tx.dispatchable
        tx.dispatchable = dispatchable
        return results
    return create_triggers(tx, [Trigger(new, tx.now, ttl) for new in news])


def create_triggers(tx: t.Tx, triggers: Sequence[Trigger]) -> list[Created | GhpulseError]:
    """`create_many` of triggers that arrived at different times (`Trigger.now`, their runs'
    creation time) with their own request-id TTLs; their claims are ignored."""
    results: list[Created | GhpulseError] = []
    dispatchable = False
    batch_now = tx.now
    news = [trigger.new for trigger in triggers]
    keys = creation.Keys.prefetch(tx, news)
    fresh = _insert_fresh(tx, triggers, keys)
    try:
        for index, trigger in enumerate(triggers):
            tx.now = trigger.now
            results.append(_create_one(tx, trigger.new, trigger.ttl, keys, fresh.get(index)))
            dispatchable = dispatchable or tx.dispatchable
    finally:
        tx.now = batch_now
    keys.write(tx)
    tx.dispatchable = dispatchable
    return results


def _insert_fresh(tx: t.Tx, triggers: Sequence[Trigger], keys: creation.Keys) -> dict[int, Fresh]:
    """Insert at once the runs of triggers with no stored request id whose concurrency key no
    earlier trigger of the batch names; by index, those the database took (the others' keys are
    held: they go the one-run path)."""
    candidates: dict[int, Fresh] = {}
    named: set[str] = set()
    batch_now = tx.now
    for index, trigger in enumerate(triggers):
        new = trigger.new
        first = new.concurrency_key not in named
        named.add(new.concurrency_key)
        if first and not (new.request_id and new.request_id in keys.known):
            tx.now = trigger.now
            candidates[index] = creation.run_row(tx, new, ACTIVE_SLOT)
    tx.now = batch_now
    if not candidates:
        return {}
    taken = q.insert_runs_unless_taken(tx.conn, [row for row, _ in candidates.values()])
    return {index: fresh for index, fresh in candidates.items() if fresh[0]["id"] in taken}


def _create_one(
    tx: t.Tx, new: NewRun, ttl: timedelta, keys: creation.Keys | None, fresh: Fresh | None
) -> Created | GhpulseError:
    """One trigger of a batch; its transition holds only its own events."""
    events, unwritten = len(tx.events), len(tx.unwritten)
    tx.dispatchable = False
    try:
        if fresh is not None and keys is not None:
            created = creation.create_inserted(tx, new, ttl, keys, fresh)
        else:
            created = creation.create(tx, new, ttl, keys)
    except GhpulseError as exc:
        del tx.events[events:], tx.unwritten[unwritten:]
        tx.dispatchable = False
        return exc
    transition = Transition(created.run, tx.events[events:], dispatchable=tx.dispatchable)
    return replace(created, transition=transition)


def _create_alone(tx: t.Tx, new: NewRun, ttl: timedelta) -> Created | GhpulseError:
    """`_create_one` in a savepoint, retried when the database refuses it."""
    for _ in range(_RETRIES):
        events, unwritten = len(tx.events), len(tx.unwritten)
        try:
            with tx.conn.begin_nested():
                return _create_one(tx, new, ttl, None, None)
        except IntegrityError:
            del tx.events[events:], tx.unwritten[unwritten:]
            tx.dispatchable = False
    return Unavailable("too much contention creating the run; retry", retry_after=_CONTENDED)
