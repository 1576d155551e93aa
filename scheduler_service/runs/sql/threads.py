"""The run store's engines and the database threads its transactions run on.

Each store operation is one synchronous transaction run on a database thread: a whole transaction
costs one hand-off between the event loop and the thread, instead of several per statement with an
async driver. On SQLite every write goes through one writer thread and connection — SQLite has one
writer, and queueing for that thread is cheaper than busy-waiting on the database lock — while
reads run on a few reader threads against WAL snapshots. On PostgreSQL a pool of threads shares a
connection pool. A write whose caller is cancelled still runs to its commit or rollback on its
thread, so a cancelled RPC never leaves a connection half-used.

No `pool_pre_ping` (a round trip before every transaction): a transaction that finds its pooled
connection dead is run again on a fresh one — but only if its COMMIT was never sent. Once COMMIT
was sent the outcome is unknown (a TriggerRun without request_id must not become two runs), and
the caller is answered UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import structlog
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from common import db
from common.errors import Unavailable
from scheduler_service.runs.sql.lanes import Lanes

P = ParamSpec("P")
T = TypeVar("T")
log = structlog.get_logger(__name__)
RETRY_AFTER = timedelta(seconds=1)
SQLITE_READERS = 4
#: Defaults of GHPULSE_SCHEDULER_DB_POOL_SIZE and GHPULSE_SCHEDULER_DB_ASYNC_POOL_SIZE.
POSTGRES_THREADS = 10
#: Re-runs of a transaction whose connection was found dead before its COMMIT was sent.
RECONNECTS = 2
#: Per database thread: whether the current transaction has sent its COMMIT.
_sent = threading.local()
POSTGRES_ASYNC_POOL = 4


@dataclass
class DatabaseThreads:
    """The writer and reader engines of one database and the thread pools that use them (the
    same engine and pool for both on PostgreSQL)."""

    url: str
    writer: Engine
    reader: Engine
    write_pool: Lanes
    read_pool: Lanes
    #: PostgreSQL: connections of the async engine (and as many more on overflow).
    async_pool_size: int = POSTGRES_ASYNC_POOL
    _async_engines: tuple[AsyncEngine, AsyncEngine] | None = field(
        default=None, init=False, repr=False
    )

    @classmethod
    def open(
        cls,
        url: str,
        pool_size: int = POSTGRES_THREADS,
        async_pool_size: int = POSTGRES_ASYNC_POOL,
    ) -> DatabaseThreads:
        """The engines of `url`; on PostgreSQL `pool_size` threads and connections for the run
        store, `async_pool_size` (+ as many on overflow) for async components."""
        if db.is_sqlite(url):
            writer = db.create_pooled(url, pool_size=1, max_overflow=0)
            reader = db.create_pooled(
                url, immediate=False, pool_size=SQLITE_READERS, max_overflow=0
            )
            return cls(
                url,
                writer,
                reader,
                Lanes(1, "ghpulse-db-writer"),
                Lanes(SQLITE_READERS, "ghpulse-db-reader"),
            )
        engine = db.create_pooled(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=False)
        _track_commits(engine)
        pool = Lanes(pool_size, "ghpulse-db")
        return cls(url, engine, engine, pool, pool, async_pool_size)

    @property
    def flushes(self) -> int:
        """Group-commit flushes run at once: one per SQLite writer, one per 4 PostgreSQL threads."""
        return max(1, self.write_pool.size // 4)

    @property
    def lifecycle_flushes(self) -> int:
        """Flushes of crawlers' lifecycle writes run at once: one on SQLite; on PostgreSQL half
        the threads, whose round trips overlap (measured: 84 runs started/s during a flood
        against 74 with a quarter, BENCHMARKS.md "lg")."""
        return max(1, self.write_pool.size // 2)

    def async_engines(self) -> tuple[AsyncEngine, AsyncEngine]:
        """(writer, reader) async engines on the same database, created on first use; disposed
        by `close`."""
        if self._async_engines is None:
            if db.is_sqlite(self.url):
                writer = db.create_async(self.url, pool_size=1, max_overflow=0, pool_timeout=60)
                reader = db.create_async(self.url, immediate=False, pool_size=2, max_overflow=2)
                self._async_engines = (writer, reader)
            else:
                size = self.async_pool_size
                engine = db.create_async(self.url, pool_size=size, max_overflow=size)
                self._async_engines = (engine, engine)
        return self._async_engines

    async def close(self) -> None:
        self.write_pool.shutdown()
        if self.read_pool is not self.write_pool:
            self.read_pool.shutdown()
        for engine in {self.writer, self.reader}:
            engine.dispose()
        if self._async_engines is not None:
            for async_engine in set(self._async_engines):
                await async_engine.dispose()


class OnThreads(Protocol):
    """What `on_writer` and `on_reader` need of the object whose methods they wrap."""

    @property
    def threads(self) -> DatabaseThreads: ...


S = TypeVar("S", bound=OnThreads)
Method = Callable[Concatenate[S, P], T]
AsyncMethod = Callable[Concatenate[S, P], Coroutine[Any, Any, T]]


def on_writer(method: Method[S, P, T]) -> AsyncMethod[S, P, T]:
    """Make a synchronous write transaction an async method run on the writer thread."""

    @functools.wraps(method)
    async def write(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await _on(self.threads.write_pool, functools.partial(method, self, *args, **kwargs))

    return write


def on_urgent_writer(method: Method[S, P, T]) -> AsyncMethod[S, P, T]:
    """Like `on_writer`, in the urgent lane: a crawler's lifecycle write (a result, a step, a
    lease, a claim for a free slot) is never queued behind a flood of triggers."""

    @functools.wraps(method)
    async def write(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(method, self, *args, **kwargs)
        return await _on(self.threads.write_pool, call, urgent=True)

    return write


def on_reader(method: Method[S, P, T]) -> AsyncMethod[S, P, T]:
    """Make a synchronous read an async method run on a reader thread."""

    @functools.wraps(method)
    async def read(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await _on(self.threads.read_pool, functools.partial(method, self, *args, **kwargs))

    return read


def _track_commits(engine: Engine) -> None:
    def began(_conn: Any) -> None:
        _sent.commit = False

    def committing(_conn: Any) -> None:
        _sent.commit = True

    event.listen(engine, "begin", began)
    event.listen(engine, "commit", committing)


def reconnecting(call: Callable[[], T]) -> T:
    """Run `call` (on a database thread) again while its connection turns out dead before any
    COMMIT was sent: the server rolled the transaction back, nothing happened."""
    for attempt in range(RECONNECTS + 1):
        _sent.commit = False
        try:
            return call()
        except DBAPIError as exc:
            if not exc.connection_invalidated or _sent.commit or attempt == RECONNECTS:
                raise
            log.info("store.reconnecting", attempt=attempt + 1)
    raise AssertionError("unreachable")


async def _on(pool: Lanes, call: Callable[[], T], *, urgent: bool = False) -> T:
    """Run `call` on `pool`; a database that cannot be reached (or stays locked) is UNAVAILABLE
    with a retry hint, never an INTERNAL error: the transaction was rolled back, so retrying the
    RPC is safe (TriggerRun with its request_id)."""
    try:
        future = pool.submit(functools.partial(reconnecting, call), urgent=urgent)
        return await asyncio.wrap_future(future)
    except (OperationalError, InterfaceError) as exc:
        log.warning("store.unavailable", error=str(exc.orig or exc).splitlines()[0])
        raise Unavailable("the run store is unavailable; retry", retry_after=RETRY_AFTER) from exc
