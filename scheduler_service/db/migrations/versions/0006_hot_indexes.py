"""Indexes that keep the hot queries independent of history: partial indexes over the few active
runs (dispatch order, lease expiry, forced cancels, deadlines, the metrics' gauges), and indexes
for ListRuns by concurrency key and by label.

Revision ID: 0006_hot_indexes
Revises: 0005_workers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_hot_indexes"
down_revision = "0005_workers"
branch_labels = None
depends_on = None

_ACTIVE = "state IN ('pending', 'queued', 'running')"
#: (name, table, columns, partial index predicate or None)
_INDEXES: tuple[tuple[str, str, tuple[str, ...], str | None], ...] = (
    ("ix_runs_dispatchable", "runs", ("created_at", "id"), "state = 'pending'"),
    ("ix_runs_running_lease", "runs", ("lease_expires_at",), "state = 'running'"),
    (
        "ix_runs_running_cancel",
        "runs",
        ("cancel_requested_at",),
        "state = 'running' AND cancel_requested_at IS NOT NULL",
    ),
    ("ix_runs_active_deadline", "runs", ("deadline_at",), _ACTIVE),
    ("ix_runs_active_job_state", "runs", ("job_kind", "state"), _ACTIVE),
    ("ix_runs_concurrency_key_created", "runs", ("concurrency_key", "created_at", "id"), None),
    ("ix_run_labels_key_value_run", "run_labels", ("key", "value", "run_id"), None),
)


def upgrade() -> None:
    for name, table, columns, where in _INDEXES:
        predicate = sa.text(where) if where else None
        op.create_index(
            name, table, list(columns), sqlite_where=predicate, postgresql_where=predicate
        )


def downgrade() -> None:
    for name, table, _columns, _where in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
