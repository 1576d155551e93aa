"""Building runs in a run store: a `NewRun` with defaults, a run claimed by a worker, and the
instants and durations the run-store tests share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from common.jobs import CrawlSpec, default_concurrency_key
from scheduler_service.runs.model import AttemptRef, ConflictPolicy, NewRun
from scheduler_service.runs.sql.store import SqlRunStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)
DAY = timedelta(days=1)


def new_run(repo: str = "octo/one", policy: ConflictPolicy = ConflictPolicy.JOIN, **kw) -> NewRun:
    """A run of a crawl of `repo` (its default concurrency key, 3 attempts); `kw` overrides."""
    spec = CrawlSpec((repo,))
    values: dict[str, Any] = {
        "spec": spec,
        "concurrency_key": default_concurrency_key(spec),
        "policy": policy,
        "max_attempts": 3,
        "labels": {},
    }
    values.update(kw)
    return NewRun(**values)


async def running(store: SqlRunStore, worker: str = "w1", **kw) -> AttemptRef:
    """Create a run (`kw` as for `new_run`) at `T0` and let `worker` claim it."""
    await store.create_run(new_run(**kw), T0, DAY)
    claimed = await store.claim(worker, T0, TTL)
    assert claimed.run is not None
    return claimed.run.ref
