"""The run store without `pool_pre_ping` on PostgreSQL: a transaction that finds its pooled
connection dead before sending anything is run again; one whose connection dies once COMMIT was
sent is never run again (its outcome is unknown), and a TriggerRun never becomes two runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from common.errors import Unavailable
from scheduler_service.runs.model import RunQuery
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.store import SqlRunStore
from tests.support import postgres
from tests.support.runs import DAY, T0, new_run

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(scheduler_pg_template: str) -> Iterator[str]:
    with postgres.clone(scheduler_pg_template) as url:
        yield url


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[SqlRunStore]:
    store = SqlRunStore.open(pg_url, RetryPolicy())
    yield store
    await store.close()


def _terminate(pid: int) -> None:
    with psycopg.connect(postgres.PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _terminate_all(database: str) -> int:
    with psycopg.connect(postgres.PG_ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


async def _count(store: SqlRunStore) -> int:
    return len(await store.list_runs(RunQuery(page_size=100)))


async def test_a_dead_pooled_connection_is_replaced_before_anything_is_sent(
    store: SqlRunStore, pg_url: str
) -> None:
    await store.create_run(new_run("octo/warm"), T0, DAY)
    assert _terminate_all(pg_url.rsplit("/", 1)[1]) >= 1

    created = await store.create_run(new_run("octo/after"), T0, DAY)

    assert created.run.state.value == "pending"
    assert await _count(store) == 2


async def test_a_connection_lost_once_commit_was_sent_is_not_retried(store: SqlRunStore) -> None:
    commits: list[int] = []

    def die_at_commit(conn: Any) -> None:
        pid = conn.connection.dbapi_connection.info.backend_pid
        commits.append(pid)
        _terminate(pid)

    event.listen(store.threads.writer, "commit", die_at_commit)
    try:
        with pytest.raises(Unavailable):
            await store.create_run(new_run("octo/lost-ack"), T0, DAY)
    finally:
        event.remove(store.threads.writer, "commit", die_at_commit)

    # One COMMIT sent, none again: the trigger is not run a second time.
    assert len(commits) == 1
    assert await _count(store) <= 1
