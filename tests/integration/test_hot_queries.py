"""The hot queries' PostgreSQL plans use the partial indexes of active runs (migration 0004), so
their cost does not grow with the finished runs: checked on a table of finished runs with the
statistics up to date (ANALYZE) and sequential scans discouraged. The claims' hand-out also reads
its index in order with no statistics at all (migration 0008), on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, text

from common import db
from ghpulse.testing.run_history import add_active, fill_finished
from scheduler_service.runs.sql import statements as q
from scheduler_service.runs.sql.hot_queries import explain, hot_queries
from scheduler_service.runs.sql.store import SqlRunStore
from tests.support import postgres
from tests.support.runs import new_run

T0 = datetime(2026, 1, 1, tzinfo=UTC)


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


async def test_the_hand_out_reads_its_index_in_order_however_many_runs_wait(
    scheduler_db_url: str,
) -> None:
    """The claims' statement reads `ix_runs_dispatchable` in order on a table never analyzed
    since 10,000 runs piled up (a new database flooded with triggers), where the planner left to
    itself scans every pending run and sorts them: a claim costing O(backlog) just when a backlog
    builds. On PostgreSQL the plan is the one the function actually runs (auto_explain)."""
    store = SqlRunStore.open(scheduler_db_url)
    try:
        for batch in range(20):
            news = [new_run(f"o/wait-{batch}-{i}") for i in range(500)]
            await store.create_runs(news, T0 + timedelta(seconds=batch), timedelta(days=1))
    finally:
        await store.close()
    engine = db.create_pooled(scheduler_db_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            oldest = conn.execute(text("SELECT id FROM runs ORDER BY created_at, id LIMIT 1"))
            expected = oldest.scalar_one()
            plan, claimed = _hand_out_plan(conn)
    finally:
        engine.dispose()
    assert "ix_runs_dispatchable" in plan, plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
    assert claimed == expected


def _hand_out_plan(conn: Connection) -> tuple[str, str]:
    """The plan the claims' statement runs with, and the run it hands out (rolled back)."""
    conn.rollback()
    statement = q.next_dispatchable(conn)
    params = {"w_now": T0 + timedelta(days=1)}
    if conn.dialect.name == "sqlite":
        assert statement is q.NEXT_DISPATCHABLE_SQLITE
        compiled = q.NEXT_DISPATCHABLE_SQLITE.statement.compile(conn)
        explained = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + compiled.string,
            tuple(compiled.construct_params(params)[name] for name in compiled.positiontup or ()),
        )
        plan = "\n".join(str(row[-1]) for row in explained)
        handed_out = statement.first(conn, params)
        assert handed_out is not None
        claimed = handed_out["id"]
        conn.rollback()
        return plan, str(claimed)
    # PostgreSQL: the statement calls a function; auto_explain logs the plan of the query inside
    # it, sent to this client as a NOTICE.
    notices: list[str] = []
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    for setting in (
        "LOAD 'auto_explain'",
        "SET LOCAL auto_explain.log_min_duration = 0",
        "SET LOCAL auto_explain.log_nested_statements = on",
        "SET LOCAL auto_explain.log_level = notice",
        "SET LOCAL client_min_messages = notice",
    ):
        conn.exec_driver_sql(setting)
    handed_out = statement.first(conn, params)
    assert handed_out is not None
    claimed = handed_out["id"]
    conn.rollback()
    inner = [notice for notice in notices if "FROM runs" in notice]
    return "\n".join(inner), str(claimed)
