"""`RunStore` on SQLAlchemy: SQLite (embedded default) and PostgreSQL.

Each method is one synchronous transaction (plain SQLAlchemy Core) that `on_writer` / `on_reader`
run on a database thread (see `threads`); the building blocks are in `creation` (new runs),
`transitions` (changes of one run) and `reads` (queries and row conversions).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Self, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from common import db
from common.errors import GhpulseError, Unavailable
from scheduler_service.cluster.notice import CHANNEL, Notifier
from scheduler_service.errors import RunConflict, RunFinished, RunNotFound
from scheduler_service.runs.model import (
    AttemptRef,
    AttemptResult,
    LeaseLosses,
    NewRun,
    Run,
    RunError,
    RunEvent,
    RunQuery,
    RunState,
    StepReport,
)
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql import claiming, creation, fanout, group, reads, rerun
from scheduler_service.runs.sql import transitions as t
from scheduler_service.runs.sql.claiming import Trigger, create_and_claim
from scheduler_service.runs.sql.group import GroupCommit, LifecycleGroup
from scheduler_service.runs.sql.threads import (
    DatabaseThreads,
    on_reader,
    on_urgent_writer,
    on_writer,
)
from scheduler_service.runs.store import (
    Claim,
    Created,
    Reattachment,
    RunStore,
    StopKind,
    StopRequest,
    Transition,
)

runs = t.runs
RUNNING = RunState.RUNNING.value
_CONTENTION_RETRIES = 8
T = TypeVar("T")


class SqlRunStore(RunStore):
    def __init__(
        self, threads: DatabaseThreads, retry: RetryPolicy, *, group_commit: bool = True
    ) -> None:
        self.threads = threads
        self.url = threads.url
        self._retry = retry
        #: Concurrent triggers written together (see `group`); None: one transaction each.
        self.group = (
            GroupCommit(self, threads.write_pool, threads.flushes) if group_commit else None
        )
        #: Concurrent crawler lifecycle writes, written together unless group commit is off.
        pool = threads.write_pool
        self.lifecycle = (
            LifecycleGroup(self, pool, threads.lifecycle_flushes)
            if group_commit
            else LifecycleGroup(self, pool, flushes=pool.size, max_batch=1)
        )
        #: Tells the other replicas what each write transaction did (PostgreSQL only).
        self.notifier = None if db.is_sqlite(self.url) else Notifier()

    @classmethod
    def open(
        cls,
        url: str,
        retry: RetryPolicy | None = None,
        *,
        pool_size: int = 10,
        async_pool_size: int = 4,
        group_commit: bool = True,
    ) -> Self:
        """The store on `url`; on PostgreSQL `pool_size` connections (and threads) for the runs,
        `async_pool_size` (+ as many on overflow) for the async components (schedules);
        `group_commit`: concurrent triggers share transactions."""
        threads = DatabaseThreads.open(url, pool_size, async_pool_size)
        return cls(threads, retry or RetryPolicy(), group_commit=group_commit)

    def async_engines(self) -> tuple[AsyncEngine, AsyncEngine]:
        """(writer, reader) async engines on the run store's database, for components with async
        SQLAlchemy code of their own (the schedule store); disposed with the run store."""
        return self.threads.async_engines()

    async def close(self) -> None:
        batches: list[GroupCommit | LifecycleGroup] = [self.lifecycle]
        batches += [self.group] if self.group is not None else []
        for batch in batches:
            batch.close()
        await self.threads.close()
        for batch in batches:
            # Flushes queued before the threads stopped have run; anything left is answered.
            batch.fail()

    @contextmanager
    def transaction(self, now: datetime) -> Iterator[t.Tx]:
        """One write transaction on the calling (database) thread: its events are flushed and
        announced to the other replicas before the commit."""
        with self.threads.writer.begin() as conn:
            tx = t.Tx(conn, now, self._retry)
            yield tx
            fanout.settle(tx)
            notifier = self.notifier
            payload = notifier and notifier.payload(tx.events, tx.dispatchable, tx.cancels)
            tx.flush(notify=(CHANNEL, payload) if payload else None)

    # -- reads -------------------------------------------------------------------------------

    @on_reader
    def get_run(self, run_id: str) -> Run:
        with self.threads.reader.connect() as conn:
            return reads.load(conn, run_id)

    @on_reader
    def list_runs(self, query: RunQuery) -> list[Run]:
        with self.threads.reader.connect() as conn:
            return reads.list_runs(conn, query)

    @on_reader
    def events_after(self, run_id: str, after_seq: int, limit: int = 1000) -> list[RunEvent]:
        with self.threads.reader.connect() as conn:
            return reads.events_after(conn, run_id, after_seq, limit)

    @on_reader
    def pending_cancels(self, worker_ids: list[str]) -> list[StopRequest]:
        if not worker_ids:
            return []
        with self.threads.reader.connect() as conn:
            return reads.pending_cancels(conn, worker_ids)

    # -- creating and dispatching runs ---------------------------------------------------------

    async def create_run(
        self, new: NewRun, now: datetime, idempotency_ttl: timedelta, claim: Claim | None = None
    ) -> Created:
        if self.group is not None:
            return await self.group.create(Trigger(new, now, idempotency_ttl, claim))
        return await self._create_alone(new, now, idempotency_ttl, claim)

    @on_writer
    def _create_alone(
        self, new: NewRun, now: datetime, idempotency_ttl: timedelta, claim: Claim | None
    ) -> Created:
        return self.create_now(Trigger(new, now, idempotency_ttl, claim))

    def create_now(self, trigger: Trigger) -> Created:
        """`create_run` in a transaction of its own, on the calling (database) thread."""
        for _ in range(_CONTENTION_RETRIES):
            try:
                with self.transaction(trigger.now) as tx:
                    return create_and_claim(tx, trigger)
            except IntegrityError:
                # Another process won a race on the same key or request_id (PostgreSQL; SQLite
                # transactions are serialized): the next pass sees its row.
                continue
        raise Unavailable(
            "too much contention creating the run; retry", retry_after=timedelta(seconds=1)
        )

    @on_writer
    def create_runs(
        self, news: Sequence[NewRun], now: datetime, idempotency_ttl: timedelta
    ) -> list[Created | GhpulseError]:
        try:
            with self.transaction(now) as tx:
                return _settled(tx, group.create_many(tx, news, idempotency_ttl, isolated=False))
        except IntegrityError:
            # A race lost to another process (PostgreSQL): again, each trigger on its own.
            with self.transaction(now) as tx:
                return _settled(tx, group.create_many(tx, news, idempotency_ttl, isolated=True))

    async def claim(self, worker_id: str, now: datetime, lease_ttl: timedelta) -> Transition:
        return await self._lifecycle(
            now, "", functools.partial(claiming.claim, worker_id, lease_ttl)
        )

    # -- reports from crawlers ---------------------------------------------------------------

    async def record_steps(
        self, ref: AttemptRef, worker_id: str, reports: Sequence[StepReport], now: datetime
    ) -> Transition:
        body = functools.partial(claiming.record_steps, ref, worker_id, reports)
        return await self._lifecycle(now, ref.run_id, body)

    async def finish_attempt(
        self,
        ref: AttemptRef,
        worker_id: str,
        result: AttemptResult,
        now: datetime,
        claim: Claim | None = None,
        reports: Sequence[StepReport] = (),
    ) -> Transition:
        body = functools.partial(claiming.finish_and_claim, ref, worker_id, result, claim, reports)
        return await self._lifecycle(now, ref.run_id, body)

    async def _lifecycle(self, now: datetime, order: str, body: Callable[[t.Tx], T]) -> T:
        """A crawler's lifecycle write, in the urgent lane: written together with the concurrent
        ones (`group.LifecycleGroup`) unless group commit is off."""
        return await self.lifecycle.write(group.Part(now, order, body))

    def write_part(self, part: group.Part[T]) -> T:
        """`part` in a transaction of its own, on the calling (database) thread."""
        with self.transaction(part.now) as tx:
            return part.body(tx)

    async def renew_leases(
        self, worker_id: str, refs: list[AttemptRef], now: datetime, lease_ttl: timedelta
    ) -> list[AttemptRef]:
        if not refs:
            # An idle crawler's heartbeat: nothing to write.
            return []
        return await self._renew(worker_id, refs, now, lease_ttl)

    async def _renew(
        self, worker_id: str, refs: list[AttemptRef], now: datetime, lease_ttl: timedelta
    ) -> list[AttemptRef]:
        return await self._lifecycle(
            now, refs[0].run_id, lambda tx: t.renew(tx, worker_id, refs, lease_ttl)
        )

    @on_urgent_writer
    def reattach(
        self, worker_id: str, refs: list[AttemptRef], now: datetime, lease_ttl: timedelta
    ) -> Reattachment:
        with self.transaction(now) as tx:
            reattached = t.renew(tx, worker_id, refs, lease_ttl)
            abandoned = [ref for ref in refs if ref not in reattached]
            held = {ref.run_id for ref in reattached}
            lost = tx.conn.execute(
                select(runs.c.id).where(runs.c.worker_id == worker_id, runs.c.state == RUNNING)
            )
            for run_id in [r for r in lost.scalars() if r not in held]:
                row = t.lock_run(tx, run_id)
                if row is None or (row["state"], row["worker_id"]) != (RUNNING, worker_id):
                    # Changed since the unlocked read (e.g. the sweep expired or failed it).
                    continue
                if row["cancel_requested_at"] is not None:
                    # Its cancellation was requested: retrying would run a cancelled run again.
                    gone = f"cancelled (crawler {worker_id} reconnected without it)"
                    t.finish(tx, row, RunState.CANCELLED, gone)
                    continue
                reason = f"crawler {worker_id} reconnected without this attempt"
                t.retry_or_fail(tx, row, RunError("WORKER_LOST", reason, True), reason)
            return Reattachment(reattached, abandoned, tx.transition())

    @on_urgent_writer
    def shorten_leases(self, worker_id: str, until: datetime) -> None:
        with self.transaction(until) as tx:
            tx.conn.execute(
                update(runs)
                .where(
                    runs.c.worker_id == worker_id,
                    runs.c.state == RUNNING,
                    runs.c.lease_expires_at > until,
                )
                .values(lease_expires_at=until)
            )

    # -- client operations --------------------------------------------------------------------

    @on_writer
    def cancel_run(self, run_id: str, reason: str, now: datetime, by: str = "") -> Transition:
        transition = self._cancel(run_id, reason, now, by)
        run = transition.run
        if run is None or not (run.children_total and run.worker_id == ""):
            return transition
        # A parent: each active child cancelled in a transaction of its own (child, then parent:
        # the one lock order), the parent ending with the last of them.
        with self.threads.writer.connect() as conn:
            child_ids = fanout.active_children(conn, run_id)
        for child_id in child_ids:
            try:
                transition.merge(self._cancel(child_id, reason, now, by))
            except RunFinished:
                continue  # ended meanwhile
        with self.threads.writer.connect() as conn:
            transition.run = reads.load(conn, run_id)
        return transition

    def _cancel(self, run_id: str, reason: str, now: datetime, by: str) -> Transition:
        with self.transaction(now) as tx:
            row = t.lock_run(tx, run_id)
            if row is None:
                raise RunNotFound(run_id)
            state = RunState(row["state"])
            stops: list[StopRequest] = []
            if state in (RunState.SUCCEEDED, RunState.FAILED):
                raise RunFinished(run_id, state.value, "cancel")
            if state is not RunState.CANCELLED and row["cancel_requested_at"] is None:
                t.set_run(tx, row, cancelled_by=by)
            if state in (RunState.PENDING, RunState.QUEUED):
                t.finish(tx, row, RunState.CANCELLED, reason or "cancelled")
            elif state is RunState.RUNNING:
                if row["cancel_requested_at"] is None:
                    t.set_run(tx, row, cancel_requested_at=now)
                if fanout.is_parent(row):
                    return tx.transition(reads.with_steps(tx.conn, row))
                tx.cancels = True
                stops.append(
                    StopRequest(
                        row["worker_id"],
                        AttemptRef(run_id, row["attempt"]),
                        StopKind.CANCEL,
                        reason or "cancelled",
                    )
                )
            transition = tx.transition(reads.run_of(tx, row))
            transition.stops = stops
            return transition

    @on_writer
    def retry_run(self, run_id: str, now: datetime, by: str = "") -> Transition:
        try:
            with self.transaction(now) as tx:
                row = rerun.retry(tx, run_id, by)
                fanout.settle(tx)
                tx.flush()
                return tx.transition(reads.load(tx.conn, row["id"]))
        except IntegrityError:
            with self.threads.reader.connect() as conn:
                run = reads.load(conn, run_id)
            raise RunConflict(run.concurrency_key, "(another run)") from None

    # -- time ------------------------------------------------------------------------------

    async def expire(
        self, now: datetime, cancel_grace: timedelta, losses: LeaseLosses | None = None
    ) -> Transition:
        # The candidates are found on a reader first: a sweep that finds nothing to do never
        # waits for the writer.
        candidates = await self._expiry_candidates(now, cancel_grace)
        if not candidates:
            return Transition()
        return await self._expire(candidates, now, cancel_grace, losses or LeaseLosses())

    @on_reader
    def _expiry_candidates(self, now: datetime, cancel_grace: timedelta) -> list[str]:
        with self.threads.reader.connect() as conn:
            return reads.expiry_candidates(conn, now, cancel_grace)

    @on_writer
    def _expire(
        self, candidates: list[str], now: datetime, cancel_grace: timedelta, losses: LeaseLosses
    ) -> Transition:
        """Apply time limits to `candidates`, one transaction each."""
        total = Transition()
        for run_id in candidates:
            with self.transaction(now) as tx:
                row = t.lock_run(tx, run_id)
                if row is None:
                    continue
                stops = t.expire_one(tx, row, cancel_grace, losses)
                step = tx.transition()
                step.stops = stops
                total.merge(step)
        return total

    @on_writer
    def purge(self, finished_before: datetime, now: datetime) -> int:
        with self.transaction(now) as tx:
            tx.conn.execute(
                delete(creation.idempotency).where(creation.idempotency.c.expires_at <= now)
            )
            result = tx.conn.execute(
                delete(runs).where(
                    runs.c.slot.is_(None),
                    runs.c.state.not_in(reads.ACTIVE_STATES),
                    runs.c.finished_at < finished_before,
                )
            )
            return int(result.rowcount or 0)


def _settled(tx: t.Tx, outcomes: list[Created | GhpulseError]) -> list[Created | GhpulseError]:
    """`outcomes` of a batch of triggers, the fan-out parents among them given their children
    before the commit (the parents' answers are as created, before the expansion)."""
    fanout.settle(tx)
    return outcomes
