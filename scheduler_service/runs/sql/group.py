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

The queue and its flushes are a `lanes.Batcher` (which tells why it cannot hang): a flush is an
ordinary call in the writer threads' normal lane (crawler lifecycle writes, in the urgent lane,
still go first); at most `flushes` run at once (SQLite: one; PostgreSQL: a few, leaving the other
threads to crawler writes and reads, and letting batches grow while they run).

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

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from common.errors import GhpulseError, Unavailable
from scheduler_service.db.models import ACTIVE_SLOT
from scheduler_service.errors import SchedulerError
from scheduler_service.runs.model import NewRun, RunEvent
from scheduler_service.runs.sql import creation, fanout
from scheduler_service.runs.sql import statements as q
from scheduler_service.runs.sql import transitions as t
from scheduler_service.runs.sql.claiming import Trigger, create_and_claim
from scheduler_service.runs.sql.lanes import Batcher, Lanes
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
T = TypeVar("T")


class Writer(Protocol):
    """What a flush needs of the store."""

    def transaction(self, now: datetime) -> AbstractContextManager[t.Tx]: ...

    def create_now(self, trigger: Trigger) -> Created: ...

    def write_part(self, part: Part[T]) -> T: ...


@dataclass(frozen=True)
class Part(Generic[T]):
    """A crawler's lifecycle write (its result, steps, a claim, a lease renewal): `body`, run in
    the batch's transaction at time `now`; batches write their parts in `order` (a run id)."""

    now: datetime
    order: str
    body: Callable[[t.Tx], T]


def _order(trigger: Trigger) -> tuple[str, str]:
    return (trigger.new.concurrency_key, trigger.new.request_id)


def _unavailable(why: str = "the run store is unavailable; retry") -> Unavailable:
    return Unavailable(why, retry_after=RETRY_AFTER)


class _Batches:
    """A queue of writes waiting for flushes (a `Batcher`)."""

    _batcher: Batcher[Any, Any]

    @property
    def waiting(self) -> int:
        """Writes waiting for a flush."""
        return self._batcher.waiting

    def close(self) -> None:
        """Accept no more writes (those waiting are still flushed, or answered by `fail`)."""
        self._batcher.close()

    def fail(self) -> None:
        """Answer every write still waiting UNAVAILABLE (the writer threads are gone)."""
        self._batcher.fail()


class GroupCommit(_Batches):
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
        self._batcher: Batcher[Trigger, Created] = Batcher(
            lanes,
            self._write,
            _unavailable,
            flushes=flushes,
            max_batch=max_batch,
            max_waiting=max_waiting,
        )

    async def create(self, trigger: Trigger) -> Created:
        """`RunStore.create_run`, answered once the batch it was written in has committed."""
        return await self._batcher.submit(trigger)

    def _write(self, batch: list[Trigger]) -> list[Outcome]:
        try:
            return reconnecting(lambda: self._transaction(batch))
        except DBAPIError as exc:
            if not _race(exc):
                log.warning("store.batch_failed", size=len(batch), error=_first_line(exc))
                return []
            log.info("store.batch_alone", size=len(batch), error=_first_line(exc))
            return [self._alone(trigger) for trigger in batch]

    def _transaction(self, batch: list[Trigger]) -> list[Outcome]:
        """Write `batch` in one transaction; each trigger's outcome, known once it committed."""
        outcomes: dict[int, Outcome] = {}
        ordered = sorted(batch, key=_order)
        plain = [trigger for trigger in ordered if _plain(trigger)]
        with self._writer.transaction(ordered[0].now) as tx:
            if len(plain) > 1:
                # The common case: their runs in one multi-row INSERT, their request ids read
                # in one statement and written in one (see `create_triggers`).
                for trigger, outcome in zip(plain, create_triggers(tx, plain), strict=True):
                    outcomes[id(trigger)] = outcome
            for trigger in ordered:
                if id(trigger) in outcomes:
                    continue
                part = t.Tx(tx.conn, trigger.now, tx.retry)
                try:
                    outcomes[id(trigger)] = create_and_claim(part, trigger)
                except SchedulerError as exc:
                    # Refused before writing anything of its own: that caller's answer alone.
                    outcomes[id(trigger)] = exc
                    continue
                tx.absorb(part)
        return [outcomes[id(trigger)] for trigger in batch]

    def _alone(self, trigger: Trigger) -> Outcome:
        try:
            return self._writer.create_now(trigger)
        except DBAPIError as exc:
            log.warning("store.unavailable", error=_first_line(exc))
            return _unavailable()
        except Exception as exc:
            return exc


class LifecycleGroup(_Batches):
    """Concurrent lifecycle writes of crawlers, written together in the urgent lane: the slots
    that finish while the writer is busy share one transaction (one BEGIN, one COMMIT, one
    events INSERT) — a result with the claim of its slot's next run stays one part. Each part
    runs on a `Tx` of its own over the batch's connection, so each caller gets its own
    transition. A part that fails, or a batch the database refuses, rolls the batch back and
    every part is written again alone, answered with its own outcome or error."""

    def __init__(
        self, writer: Writer, lanes: Lanes, flushes: int = 1, max_batch: int = MAX_BATCH
    ) -> None:
        self._writer = writer
        self._batcher = Batcher(
            lanes, self._write, _unavailable, urgent=True, flushes=flushes, max_batch=max_batch
        )

    async def write(self, part: Part[T]) -> T:
        """`part`'s outcome, once the transaction it was written in has committed."""
        result: T = await self._batcher.submit(part)
        return result

    def _write(self, parts: list[Part[Any]]) -> list[Any]:
        if len(parts) > 1:
            try:
                return reconnecting(lambda: self._together(parts))
            except Exception as exc:  # each part alone now, answered with its own outcome
                log.info("store.parts_alone", size=len(parts), error=str(exc).splitlines()[0])
        return [self._alone(part) for part in parts]

    def _together(self, parts: list[Part[Any]]) -> list[Any]:
        results: dict[int, Any] = {}
        ordered = sorted(parts, key=lambda part: part.order)
        with self._writer.transaction(ordered[0].now) as tx:
            for part in ordered:
                own = t.Tx(tx.conn, part.now, tx.retry)
                results[id(part)] = part.body(own)
                fanout.settle(own)
                tx.absorb(own)
        return [results[id(part)] for part in parts]

    def _alone(self, part: Part[Any]) -> Any:
        try:
            return reconnecting(lambda: self._writer.write_part(part))
        except (OperationalError, InterfaceError) as exc:
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
