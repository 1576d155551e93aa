"""Database plumbing shared by both services: URLs, engines, SQLite pragmas, migrations.

Users give a plain SQLAlchemy URL (`sqlite:///path.db`, `postgresql://user@host/db`); the async
engine and Alembic's sync engine are derived from it with the drivers ghpulse ships (aiosqlite,
psycopg 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import inspect
import os
import zlib
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, Dialect, Engine, TypeDecorator, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C", bound=type)


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sync_url(url: str | URL) -> URL:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed.set(drivername="sqlite")


def async_url(url: str | URL) -> URL:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed.set(drivername="sqlite+aiosqlite")


def ensure_sqlite_dir(url: str | URL) -> None:
    parsed = make_url(url)
    if is_sqlite(parsed) and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


CONNECT_TIMEOUT_ENV = "GHPULSE_DB_CONNECT_TIMEOUT"
STATEMENT_TIMEOUT_ENV = "GHPULSE_DB_STATEMENT_TIMEOUT"
PGBOUNCER_ENV = "GHPULSE_DB_PGBOUNCER"


def behind_pgbouncer(environ: Mapping[str, str] | None = None) -> bool:
    """GHPULSE_DB_PGBOUNCER=1: PostgreSQL is reached through PgBouncer in transaction mode, where
    a server-side prepared statement may be gone by the next transaction."""
    env = os.environ if environ is None else environ
    return env.get(PGBOUNCER_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Timeouts:
    """How long a database may take before the operation fails (and the RPC is UNAVAILABLE):
    to connect, and per statement. A hung database then never holds an RPC until the client's
    deadline. 0 turns a limit off."""

    connect: float = 10.0
    statement: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Timeouts:
        """From GHPULSE_DB_CONNECT_TIMEOUT and GHPULSE_DB_STATEMENT_TIMEOUT (seconds)."""
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            float(env.get(CONNECT_TIMEOUT_ENV) or default.connect),
            float(env.get(STATEMENT_TIMEOUT_ENV) or default.statement),
        )


#: A ghpulse option of PostgreSQL URLs, not libpq's: `?prepare_threshold=none` turns psycopg's
#: server-side prepared statements off, as PgBouncer's transaction pooling needs (1.18 keeps
#: no prepared statements across transactions); a number sets psycopg's threshold.
PREPARE_THRESHOLD = "prepare_threshold"


def postgres_url(url: str | URL) -> tuple[URL, dict[str, Any]]:
    """`url` without ghpulse's own query options, and the psycopg connect arguments they ask for."""
    parsed = make_url(url)
    extra: dict[str, Any] = {}
    # libpq's own `options` (e.g. `-c search_path=…`) is merged with the statement timeout's.
    options = parsed.query.get("options")
    if options is not None:
        extra["options"] = options if isinstance(options, str) else " ".join(options)
    value = parsed.query.get(PREPARE_THRESHOLD)
    if value is not None:
        text_value = value if isinstance(value, str) else value[-1]
        threshold = None if text_value.lower() in ("none", "off", "") else int(text_value)
        extra[PREPARE_THRESHOLD] = threshold
    return parsed.difference_update_query([PREPARE_THRESHOLD, "options"]), extra


def _postgres_options(
    kwargs: dict[str, Any], timeouts: Timeouts, extra: dict[str, Any]
) -> Timeouts | None:
    """Fill `kwargs` (connect arguments, pre-ping) for a PostgreSQL engine; the timeouts its
    transactions must set themselves (`limit_statements`), or None when the session has them."""
    # Hot-path engines (the run store's) pass pool_pre_ping=False and retry a transaction that
    # found its connection dead before anything was sent (see `scheduler_service.runs.sql.threads`).
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = {**extra, **dict(kwargs.get("connect_args") or {})}
    if timeouts.connect > 0:
        # libpq counts whole seconds, at least 2.
        connect_args.setdefault("connect_timeout", max(2, round(timeouts.connect)))
    pooled = behind_pgbouncer() or (
        PREPARE_THRESHOLD in connect_args and connect_args[PREPARE_THRESHOLD] is None
    )
    if behind_pgbouncer():
        # psycopg prepares a statement run 5 times on the session; PgBouncer's transaction
        # pooling hands the next transaction another session, where it does not exist.
        connect_args.setdefault(PREPARE_THRESHOLD, None)
    kwargs["connect_args"] = connect_args
    if timeouts.statement <= 0:
        return None
    if pooled:
        # Behind PgBouncer's transaction pooling a session setting would leak to other clients
        # (and PgBouncer refuses the `options` startup parameter): each transaction sets it.
        return timeouts
    # A direct connection: set once for the session, at connect, instead of a `SET LOCAL` round
    # trip at the start of every transaction.
    options = str(connect_args.get("options") or "")
    if "statement_timeout" not in options:
        setting = f"-c statement_timeout={_milliseconds(timeouts)}"
        connect_args["options"] = f"{options} {setting}".strip()
    return None


def _milliseconds(timeouts: Timeouts) -> int:
    return int(timeouts.statement * 1000)


def limit_statements(engine: Engine, timeouts: Timeouts | None) -> None:
    """Every transaction on `engine` (PostgreSQL behind PgBouncer) starts with `SET LOCAL
    statement_timeout`: per transaction rather than per session so that it holds behind
    PgBouncer's transaction pooling, and whatever code runs the transaction. (A direct connection
    has the timeout as a session setting from its start-up options instead.)"""
    if timeouts is None or timeouts.statement <= 0 or engine.dialect.name != "postgresql":
        return
    statement = f"SET LOCAL statement_timeout = {_milliseconds(timeouts)}"

    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql(statement)

    event.listen(engine, "begin", on_begin)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL + synchronous=NORMAL: a commit survives a process crash (not a power loss) and costs
    # no fsync; busy_timeout lets a second process wait for the write lock instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
    # Take transaction control from the sqlite3 module so BEGIN IMMEDIATE below is honoured.
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(conn: Any) -> None:
    # Every transaction takes the write lock up front: a read-then-write transaction can then
    # never deadlock against another process upgrading its own read lock.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def configure_sqlite(engine: Engine, *, immediate: bool = True) -> None:
    event.listen(engine, "connect", _sqlite_pragmas)
    if immediate:
        event.listen(engine, "begin", _sqlite_begin_immediate)


def create_async(
    url: str | URL, *, immediate: bool = True, timeouts: Timeouts | None = None, **kwargs: Any
) -> AsyncEngine:
    """The async engine for `url`. On SQLite: WAL, and (unless `immediate=False`, for read-only
    engines) every transaction begins IMMEDIATE. On PostgreSQL: connect and statement timeouts
    (`timeouts`, default from the environment)."""
    ensure_sqlite_dir(url)
    if is_sqlite(url):
        engine = create_async_engine(async_url(url), **kwargs)
        configure_sqlite(engine.sync_engine, immediate=immediate)
        return engine
    url, extra = postgres_url(url)
    limits = _postgres_options(kwargs, timeouts or Timeouts.from_env(), extra)
    engine = create_async_engine(async_url(url), **kwargs)
    limit_statements(engine.sync_engine, limits)
    return engine


def run_to_end(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """`method` runs in a task of its own that a cancellation of its caller does not interrupt:
    the caller's `CancelledError` is raised once the call has ended (committed or rolled back).

    Why: SQLAlchemy invalidates a connection whose statement a cancellation interrupts, closing it
    without a rollback; SQLite then keeps the closed connection alive as a zombie (a cursor still
    holds a statement) that keeps its write lock until the garbage collector finalizes the cursor,
    minutes later, and every other transaction fails with "database is locked" meanwhile.
    """

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        task = asyncio.ensure_future(method(*args, **kwargs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_retrieve)
            while not task.done():  # later cancellations wait too (`wait` leaves the task alone)
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([task])
            raise

    return call


def _retrieve(task: asyncio.Future[Any]) -> None:
    # The cancelled caller no longer wants the outcome: mark a failure as seen, not as lost.
    if not task.cancelled():
        task.exception()


def runs_to_end(cls: C) -> C:
    """Every public coroutine method of `cls` (a store) gets `run_to_end`."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, run_to_end(member))
    return cls


def create_pooled(
    url: str | URL, *, immediate: bool = True, timeouts: Timeouts | None = None, **kwargs: Any
) -> Engine:
    """A synchronous engine with a connection pool, for use from worker threads. On SQLite: WAL,
    connections usable from any thread, and (unless `immediate=False`) IMMEDIATE transactions. On
    PostgreSQL: connect and statement timeouts (`timeouts`, default from the environment)."""
    ensure_sqlite_dir(url)
    if is_sqlite(url):
        engine = create_engine(sync_url(url), connect_args={"check_same_thread": False}, **kwargs)
        configure_sqlite(engine, immediate=immediate)
        return engine
    url, extra = postgres_url(url)
    limits = _postgres_options(kwargs, timeouts or Timeouts.from_env(), extra)
    engine = create_engine(sync_url(url), **kwargs)
    limit_statements(engine, limits)
    return engine


def create_sync(url: str | URL, **kwargs: Any) -> Engine:
    ensure_sqlite_dir(url)
    if not is_sqlite(url):
        url, extra = postgres_url(url)
        kwargs["connect_args"] = {**extra, **dict(kwargs.get("connect_args") or {})}
    engine = create_engine(sync_url(url), poolclass=NullPool, **kwargs)
    if is_sqlite(url):
        configure_sqlite(engine)
    return engine


@contextmanager
def _migration_lock(engine: Engine, name: str) -> Iterator[Any]:
    """Serialize migrations of processes starting together: an advisory lock on PostgreSQL, a file
    lock beside the database on SQLite."""
    if engine.dialect.name == "postgresql":
        key = zlib.crc32(f"ghpulse-migrate-{name}".encode())
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield conn
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()
        return
    database = engine.url.database or ""
    if database in ("", ":memory:"):
        with engine.connect() as conn:
            yield conn
        return
    with open(f"{database}.migrate.lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def upgrade(
    url: str | URL, script_location: str, name: str, version_table: str, revision: str = "head"
) -> None:
    """Apply the Alembic migrations in `script_location` (a `package:folder` path, recording its
    revision in `version_table`) to `url`; logs one line, `migrations.current`, with the store's
    revision and what was applied."""
    engine = create_sync(url)
    try:
        with _migration_lock(engine, name) as conn:
            config = Config()
            config.set_main_option("script_location", script_location)
            config.attributes["connection"] = conn
            before = _current_revision(conn, version_table)
            command.upgrade(config, revision)
            conn.commit()
            after = _current_revision(conn, version_table)
    finally:
        engine.dispose()
    applied = _revisions_between(config, before, after)
    log.info("migrations.current", store=name, revision=after, applied=applied or None)


def _current_revision(conn: Any, version_table: str) -> str | None:
    opts = {"version_table": version_table}
    return MigrationContext.configure(conn, opts=opts).get_current_revision()


def _revisions_between(config: Config, before: str | None, after: str | None) -> list[str]:
    """The revisions applied to go from `before` to `after` (oldest first)."""
    if after is None or before == after:
        return []
    script = ScriptDirectory.from_config(config)
    walked = script.iterate_revisions(after, before or "base")
    return [rev.revision for rev in reversed(list(walked))]


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so values are stored as naive UTC and
    made aware again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass timezone-aware UTC values")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
