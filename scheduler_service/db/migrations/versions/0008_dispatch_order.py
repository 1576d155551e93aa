"""The hand-out (the oldest dispatchable run, locked) reads `ix_runs_dispatchable` in order on
PostgreSQL whatever the table's statistics say.

On a table never analyzed since a flood of triggers (a new database, or autovacuum not yet
round), the planner estimates one pending run and prefers a bitmap scan of every pending run
followed by a sort: each claim then costs O(backlog) (14 ms with 10,000 pending here, against
0.07 ms in index order), and dispatch slows down exactly when runs pile up. A planner setting
cannot be given to one statement, and a session setting would leak through PgBouncer's
transaction pooling, so the hand-out is a function with `enable_sort = off` (a sort is then
chosen only where no index provides the order). SQLite names the index in the statement
(`INDEXED BY`).

Revision ID: 0008_dispatch_order
Revises: 0007_fan_out
"""

from __future__ import annotations

from alembic import op

revision = "0008_dispatch_order"
down_revision = "0007_fan_out"
branch_labels = None
depends_on = None

_NEXT_DISPATCHABLE = """
CREATE FUNCTION ghpulse_next_dispatchable(w_now timestamptz) RETURNS SETOF runs
LANGUAGE plpgsql VOLATILE SET enable_sort = off AS $$
BEGIN
    RETURN QUERY
    SELECT * FROM runs
    WHERE state = 'pending'
      AND (not_before IS NULL OR not_before <= w_now)
      AND (deadline_at IS NULL OR deadline_at > w_now)
    ORDER BY created_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_NEXT_DISPATCHABLE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ghpulse_next_dispatchable(timestamptz)")
