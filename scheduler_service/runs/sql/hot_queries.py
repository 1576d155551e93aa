"""The run store's queries that run all the time, each with the index that keeps it as cheap with
a million finished runs as with none (migration 0004). Checked by a test (the PostgreSQL plan of
each uses its index) and printed by `bench/bench_hot_queries.py`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select

from scheduler_service.runs.model import RunQuery
from scheduler_service.runs.sql import reads
from scheduler_service.runs.sql import statements as q


@dataclass(frozen=True)
class HotQuery:
    name: str
    statement: Select[Any]
    #: Any one of these in the plan shows the query is history-independent.
    indexes: tuple[str, ...]


def hot_queries(now: datetime) -> list[HotQuery]:
    return [
        HotQuery(
            "hand-out",
            q.NEXT_DISPATCHABLE.params(w_now=now),
            ("ix_runs_dispatchable",),
        ),
        HotQuery(
            "sweep expiry",
            reads.expiry_statement(now, timedelta(seconds=30)),
            ("ix_runs_running_lease", "ix_runs_active_deadline"),
        ),
        HotQuery("pending cancels", reads.cancels_statement(["w1"]), ("ix_runs_running_cancel",)),
        HotQuery(
            "ListRuns by concurrency key",
            reads.list_statement(RunQuery(concurrency_key="crawl:o/r-7")),
            ("ix_runs_concurrency_key_created",),
        ),
        HotQuery(
            "ListRuns by label",
            reads.list_statement(RunQuery(labels={"team": "t-7"})),
            ("ix_run_labels_key_value_run", "ix_run_labels_key_value"),
        ),
        HotQuery(
            "metrics: active runs",
            reads.active_counts_statement(),
            ("ix_runs_active_job_state", "ix_runs_active_deadline"),
        ),
    ]


def explain(conn: Connection, statement: Select[Any], analyze: bool = False) -> str:
    """PostgreSQL's plan of `statement` (EXPLAIN, or EXPLAIN ANALYZE), as text."""
    compiled = statement.compile(conn, compile_kwargs={"render_postcompile": True})
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
    rows = conn.exec_driver_sql(prefix + compiled.string, compiled.params).all()
    return "\n".join(str(row[0]) for row in rows)
