"""`RunStore` on SQLAlchemy: SQLite (embedded default) and PostgreSQL.

Each operation is one synchronous transaction (`sqla_sync.SyncRunStore`) run on a database thread.
On SQLite every write goes through one writer thread and connection — SQLite has one writer, and
queueing for that thread is cheaper than busy-waiting on the database lock — while reads run on a
few reader threads against WAL snapshots. On PostgreSQL a pool of threads shares a connection pool.
A write whose caller is cancelled still runs to its commit or rollback on its thread, so a
cancelled RPC never leaves a connection half-used.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from common import db
from common.errors import Unavailable
from scheduler_service.runs.model import (
    AttemptRef,
    AttemptResult,
    NewRun,
    Run,
    RunEvent,
    RunQuery,
    StepReport,
)
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.transactions import SyncRunStore
from scheduler_service.runs.store import (
    Claim,
    Created,
    Reattachment,
    RunStore,
    StopRequest,
    Transition,
)

P = ParamSpec("P")
T = TypeVar("T")
log = structlog.get_logger(__name__)
RETRY_AFTER = timedelta(seconds=1)
SQLITE_READERS = 4
POSTGRES_THREADS = 10


class SqlRunStore(RunStore):
    def __init__(
        self,
        url: str,
        engines: tuple[Engine, Engine],
        pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
        retry: RetryPolicy,
    ) -> None:
        self.url = url
        self._engines = engines
        self._write_pool, self._read_pool = pools
        self._sync = SyncRunStore(engines[0], engines[1], retry)
        self._async_engines: tuple[AsyncEngine, AsyncEngine] | None = None

    @classmethod
    def open(cls, url: str, retry: RetryPolicy | None = None) -> SqlRunStore:
        retry = retry or RetryPolicy()
        if db.is_sqlite(url):
            writer = db.create_pooled(url, pool_size=1, max_overflow=0)
            reader = db.create_pooled(
                url, immediate=False, pool_size=SQLITE_READERS, max_overflow=0
            )
            pools = (
                ThreadPoolExecutor(1, thread_name_prefix="ghpulse-db-writer"),
                ThreadPoolExecutor(SQLITE_READERS, thread_name_prefix="ghpulse-db-reader"),
            )
            return cls(url, (writer, reader), pools, retry)
        engine = db.create_pooled(url, pool_size=POSTGRES_THREADS, max_overflow=0)
        pool = ThreadPoolExecutor(POSTGRES_THREADS, thread_name_prefix="ghpulse-db")
        return cls(url, (engine, engine), (pool, pool), retry)

    def async_engines(self) -> tuple[AsyncEngine, AsyncEngine]:
        """(writer, reader) async engines on the run store's database, for components with async
        SQLAlchemy code of their own (the schedule store); disposed with the run store."""
        if self._async_engines is None:
            if db.is_sqlite(self.url):
                writer = db.create_async(self.url, pool_size=1, max_overflow=0, pool_timeout=60)
                reader = db.create_async(self.url, immediate=False, pool_size=2, max_overflow=2)
                self._async_engines = (writer, reader)
            else:
                engine = db.create_async(self.url, pool_size=4, max_overflow=4)
                self._async_engines = (engine, engine)
        return self._async_engines

    async def close(self) -> None:
        self._write_pool.shutdown(wait=True)
        self._read_pool.shutdown(wait=True)
        for engine in set(self._engines):
            engine.dispose()
        if self._async_engines is not None:
            for async_engine in set(self._async_engines):
                await async_engine.dispose()

    async def _write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await _on(self._write_pool, functools.partial(fn, *args, **kwargs))

    async def _read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await _on(self._read_pool, functools.partial(fn, *args, **kwargs))

    async def create_run(
        self, new: NewRun, now: datetime, idempotency_ttl: timedelta, claim: Claim | None = None
    ) -> Created:
        return await self._write(self._sync.create_run, new, now, idempotency_ttl, claim)

    async def get_run(self, run_id: str) -> Run:
        return await self._read(self._sync.get_run, run_id)

    async def list_runs(self, query: RunQuery) -> list[Run]:
        return await self._read(self._sync.list_runs, query)

    async def events_after(self, run_id: str, after_seq: int, limit: int = 1000) -> list[RunEvent]:
        return await self._read(self._sync.events_after, run_id, after_seq, limit)

    async def claim(self, worker_id: str, now: datetime, lease_ttl: timedelta) -> Transition:
        return await self._write(self._sync.claim, worker_id, now, lease_ttl)

    async def record_step(
        self, ref: AttemptRef, worker_id: str, report: StepReport, now: datetime
    ) -> Transition:
        return await self._write(self._sync.record_step, ref, worker_id, report, now)

    async def finish_attempt(
        self, ref: AttemptRef, worker_id: str, result: AttemptResult, now: datetime
    ) -> Transition:
        return await self._write(self._sync.finish_attempt, ref, worker_id, result, now)

    async def renew_leases(
        self, worker_id: str, refs: list[AttemptRef], now: datetime, lease_ttl: timedelta
    ) -> list[AttemptRef]:
        return await self._write(self._sync.renew_leases, worker_id, refs, now, lease_ttl)

    async def reattach(
        self, worker_id: str, refs: list[AttemptRef], now: datetime, lease_ttl: timedelta
    ) -> Reattachment:
        return await self._write(self._sync.reattach, worker_id, refs, now, lease_ttl)

    async def shorten_leases(self, worker_id: str, until: datetime) -> None:
        await self._write(self._sync.shorten_leases, worker_id, until)

    async def cancel_run(self, run_id: str, reason: str, now: datetime) -> Transition:
        return await self._write(self._sync.cancel_run, run_id, reason, now)

    async def retry_run(self, run_id: str, now: datetime) -> Transition:
        return await self._write(self._sync.retry_run, run_id, now)

    async def expire(self, now: datetime, cancel_grace: timedelta) -> Transition:
        candidates = await self._read(self._sync.expiry_candidates, now, cancel_grace)
        if not candidates:
            return Transition()
        return await self._write(self._sync.expire, candidates, now, cancel_grace)

    async def pending_cancels(self, worker_ids: list[str]) -> list[StopRequest]:
        return await self._read(self._sync.pending_cancels, worker_ids)

    async def purge(self, finished_before: datetime, now: datetime) -> int:
        return await self._write(self._sync.purge, finished_before, now)


async def _on(pool: ThreadPoolExecutor, call: Callable[[], T]) -> T:
    """Run `call` on `pool`; a database that cannot be reached (or stays locked) is UNAVAILABLE
    with a retry hint, never an INTERNAL error: the transaction was rolled back, so retrying the
    RPC is safe (TriggerRun with its request_id)."""
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, call)
    except (OperationalError, InterfaceError) as exc:
        log.warning("store.unavailable", error=str(exc.orig or exc).splitlines()[0])
        raise Unavailable("the run store is unavailable; retry", retry_after=RETRY_AFTER) from exc
