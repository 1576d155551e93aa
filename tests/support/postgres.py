"""Throw-away PostgreSQL databases on the local server (127.0.0.1:5432, user postgres).

`PG_ADMIN_URL` (env `GHPULSE_TEST_PG`) points at a database used only to create and drop others:
the server's own `postgres` database unless told otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import create_engine, text

from common.db import sync_url

PG_ADMIN_URL = os.environ.get("GHPULSE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
#: How to start the local server when it is not running (Debian/Ubuntu packages).
START_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def _admin_dsn() -> str:
    return PG_ADMIN_URL


def reachable() -> str | None:
    """None if the server answers, else why not."""
    try:
        with psycopg.connect(_admin_dsn(), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return (
            f"PostgreSQL at {PG_ADMIN_URL} unreachable ({str(exc).strip()}); start it with "
            f"`{START_HINT}` or point GHPULSE_TEST_PG at another server"
        )


def _url_for(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def _execute(sql: str) -> None:
    with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def drop(name: str) -> None:
    _execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def template(prefix: str, prepare: Callable[[str], None]) -> Iterator[str]:
    """A database prepared once by `prepare(url)` (e.g. migrated), to clone per test."""
    name = f"{prefix}_tmpl_{uuid.uuid4().hex[:8]}"
    _execute(f'CREATE DATABASE "{name}"')
    try:
        prepare(_url_for(name))
        yield name
    finally:
        drop(name)


@contextmanager
def clone(template_name: str) -> Iterator[str]:
    """A fresh copy of `template_name`; yields its URL and drops it afterwards."""
    name = f"{template_name.split('_tmpl_')[0]}_{uuid.uuid4().hex[:10]}"
    _execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    try:
        yield _url_for(name)
    finally:
        drop(name)


@contextmanager
def fresh(prefix: str) -> Iterator[str]:
    """An empty database; yields its URL and drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _execute(f'CREATE DATABASE "{name}"')
    try:
        yield _url_for(name)
    finally:
        drop(name)


#: Parameters of a fixture over both backends (`request.param` is "sqlite" or "postgresql").
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def migrated(
    request: pytest.FixtureRequest,
    tmp_path: object,
    name: str,
    upgrade: Callable[[str], None],
    template_fixture: str,
) -> Iterator[str]:
    """A migrated, empty database for a fixture parametrized over `BACKENDS`: a temporary SQLite
    file, or a clone of the PostgreSQL template made by the session fixture `template_fixture`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/{name}.db"
        upgrade(url)
        yield url
        return
    with clone(request.getfixturevalue(template_fixture)) as url:
        yield url


def someone_waits_for_a_lock(url: str) -> bool:
    """Whether a session on `url`'s database waits for a lock (another transaction holds it)."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            return bool(waiting.scalar())
    finally:
        engine.dispose()
