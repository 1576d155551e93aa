"""A run store with a long history, made fast on PostgreSQL (`INSERT … SELECT generate_series`):
finished runs with labels, plus a few active ones, for the hot-query plans and the hand-out
benchmark."""

from __future__ import annotations

from sqlalchemy import Connection, text

_FINISHED = text(
    """
    INSERT INTO runs (id, job_kind, job, state, slot, concurrency_key, attempt, max_attempts,
                      trigger, labels, created_at, started_at, finished_at, last_seq)
    SELECT 'run_hist_' || lpad(i::text, 10, '0'), 'crawl', '{"repositories": ["o/r"]}'::jsonb,
           (ARRAY['succeeded', 'failed', 'cancelled'])[1 + i % 3], NULL,
           'crawl:o/r-' || (i % CAST(:keys AS integer)), 1, 3, 'api',
           jsonb_build_object('team', 't-' || (i % 1000)),
           now() - interval '20 days' + i * interval '1 millisecond',
           now() - interval '20 days' + i * interval '1 millisecond',
           now() - interval '20 days' + i * interval '1 millisecond', 4
    FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i
    """
)
_LABELS = text(
    """
    INSERT INTO run_labels (run_id, key, value)
    SELECT 'run_hist_' || lpad(i::text, 10, '0'), 'team', 't-' || (i % 1000)
    FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i
    """
)
_ACTIVE = text(
    """
    INSERT INTO runs (id, job_kind, job, state, slot, concurrency_key, attempt, max_attempts,
                      trigger, labels, created_at, worker_id, lease_expires_at, started_at)
    SELECT 'run_live_' || lpad(i::text, 10, '0'), 'crawl', '{"repositories": ["o/r"]}'::jsonb,
           CASE WHEN i % 2 = 0 THEN 'pending' ELSE 'running' END, 'active',
           'live:' || i, 1, 3, 'api', '{}'::jsonb, now(),
           CASE WHEN i % 2 = 0 THEN '' ELSE 'w1' END,
           CASE WHEN i % 2 = 0 THEN NULL ELSE now() + interval '1 hour' END,
           CASE WHEN i % 2 = 0 THEN NULL ELSE now() END
    FROM generate_series(1, CAST(:count AS integer)) AS i
    """
)
_PENDING = text(
    """
    INSERT INTO runs (id, job_kind, job, state, slot, concurrency_key, attempt, max_attempts,
                      trigger, labels, created_at)
    SELECT 'run_wait_' || :tag || lpad(i::text, 8, '0'), 'crawl',
           '{"repositories": ["o/r"]}'::jsonb, 'pending', 'active', 'wait:' || :tag || i, 1, 3,
           'api', '{}'::jsonb, now() + i * interval '1 microsecond'
    FROM generate_series(1, CAST(:count AS integer)) AS i
    """
)
BATCH = 200_000


def fill_finished(conn: Connection, count: int, keys: int = 10_000) -> None:
    """Add `count` finished runs (and a label each), in batches."""
    for first in range(1, count + 1, BATCH):
        bounds = {"first": first, "last": min(count, first + BATCH - 1)}
        conn.execute(_FINISHED, {**bounds, "keys": keys})
        conn.execute(_LABELS, bounds)


def add_active(conn: Connection, count: int) -> None:
    """Add `count` active runs, half pending, half running on worker `w1`."""
    conn.execute(_ACTIVE, {"count": count})


def add_pending(conn: Connection, count: int, tag: str) -> None:
    """Add `count` pending runs waiting for a crawler (`tag` keeps ids and keys unique)."""
    conn.execute(_PENDING, {"count": count, "tag": tag})
