"""The hot queries' PostgreSQL plans use the partial indexes of active runs (migration 0004), so
their cost does not grow with the finished runs: checked on a table of finished runs with the
statistics up to date (ANALYZE) and sequential scans discouraged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection

from common import db
from ghpulse.testing.run_history import add_active, fill_finished
from scheduler_service.runs.sql.hot_queries import explain, hot_queries
from tests.support import postgres


@pytest.fixture
def conn(scheduler_pg_template: str) -> Iterator[Connection]:
    with postgres.clone(scheduler_pg_template) as url:
        engine = db.create_pooled(url, pool_size=1, max_overflow=0)
        try:
            with engine.begin() as connection:
                fill_finished(connection, 20_000, keys=2_000)
                add_active(connection, 20)
            with engine.connect() as connection:
                connection.exec_driver_sql("ANALYZE")
                connection.exec_driver_sql("SET enable_seqscan = off")
                yield connection
        finally:
            engine.dispose()


def test_every_hot_query_uses_its_index(conn: Connection) -> None:
    plans = {q.name: (q, explain(conn, q.statement)) for q in hot_queries(datetime.now(UTC))}
    unindexed = {
        name: plan
        for name, (query, plan) in plans.items()
        if not any(index in plan for index in query.indexes)
    }
    assert unindexed == {}
    assert "Seq Scan on runs" not in "\n".join(plan for _q, plan in plans.values())
