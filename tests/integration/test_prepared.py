"""`common.prepared.Prepared` against `Connection.execute` on both backends: the same rows in, the
same rows out, the same errors, and every statement seen by the engine's listeners."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, event, select
from sqlalchemy.exc import IntegrityError

from common.prepared import Prepared
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql import statements as q
from scheduler_service.runs.sql.store import SqlRunStore
from tests.support.runs import DAY, T0, new_run


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy())
    yield store
    await store.close()


async def _run_id(store: SqlRunStore) -> str:
    created = await store.create_run(new_run("octo/prepared", labels={"team": "a"}), T0, DAY)
    return created.run.id


async def test_a_row_reads_as_connection_execute_reads_it(store: SqlRunStore) -> None:
    run_id = await _run_id(store)
    with store.threads.writer.begin() as conn:
        prepared = q.LOAD_RUN.first(conn, {"w_id": run_id})
        core = conn.execute(q.LOAD_RUN.statement, {"w_id": run_id}).mappings().first()
        assert q.LOAD_RUN.first(conn, {"w_id": "run_missing"}) is None
    assert core is not None and prepared == dict(core)
    # Typed as the columns say: an aware datetime, the job's JSON decoded.
    assert prepared["created_at"] == T0 and prepared["created_at"].tzinfo is not None
    assert isinstance(prepared["job"], dict)


async def test_an_update_sets_the_columns_its_parameters_name(store: SqlRunStore) -> None:
    run_id = await _run_id(store)
    later = T0 + timedelta(minutes=5)
    with store.threads.writer.begin() as conn:
        changed = q.UPDATE_RUN.run(conn, {"w_id": run_id, "not_before": later, "output": {"n": 1}})
        missing = q.UPDATE_RUN.run(conn, {"w_id": "run_missing", "not_before": later})
        # Another set of columns is another compiled form of the same statement.
        q.UPDATE_RUN.run(conn, {"w_id": run_id, "worker_id": "w9"})
    with store.threads.reader.connect() as conn:
        row = conn.execute(q.LOAD_RUN.statement, {"w_id": run_id}).mappings().one()
    assert (changed, missing) == (1, 0)
    assert (row["not_before"], row["output"], row["worker_id"]) == (later, {"n": 1}, "w9")


async def test_a_driver_error_is_the_one_sqlalchemy_raises(store: SqlRunStore) -> None:
    run_id = await _run_id(store)
    event_row = {"run_id": run_id, "seq": 1, "time": T0, "attempt": 1, "kind": "x", "data": {}}
    with pytest.raises(IntegrityError), store.threads.writer.begin() as conn:
        # Seq 1 is the run's CREATED event already.
        q.INSERT_EVENT.many(conn, [event_row])
    # The transaction was rolled back and the connection is usable again.
    with store.threads.writer.begin() as conn:
        assert q.LOAD_RUN.first(conn, {"w_id": run_id}) is not None


async def test_the_engine_listeners_see_every_statement(store: SqlRunStore) -> None:
    run_id = await _run_id(store)
    seen: list[tuple[str, Any]] = []

    def statement(_conn: Any, _cursor: Any, sql: str, parameters: Any, *_rest: Any) -> None:
        seen.append((sql.split()[0], parameters))

    engine: Engine = store.threads.writer
    event.listen(engine, "before_cursor_execute", statement)
    try:
        with engine.begin() as conn:
            q.LOAD_RUN.first(conn, {"w_id": run_id})
            q.UPDATE_RUN.run(conn, {"w_id": run_id, "worker_id": "w1"})
    finally:
        event.remove(engine, "before_cursor_execute", statement)
    kinds = [kind for kind, _ in seen if kind in ("SELECT", "UPDATE")]
    assert kinds == ["SELECT", "UPDATE"]
    assert any(run_id in str(parameters) for _, parameters in seen)


async def test_an_expanding_parameter_is_refused(store: SqlRunStore) -> None:
    by_ids = Prepared(select(q.runs).where(q.runs.c.id.in_(bindparam("w_ids", expanding=True))))
    with store.threads.reader.connect() as conn, pytest.raises(TypeError, match="expanding"):
        by_ids.all(conn, {"w_ids": ["run_a"]})
