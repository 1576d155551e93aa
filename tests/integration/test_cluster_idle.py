"""An idle replica (a crawler connected, no runs, no watchers, no schedules) costs at most 2
database transactions per second at the default intervals.

Every interval is 5 times shorter than its default here and the window is counted in sweeps, not
seconds: 50 sweeps stand for 50 s of a replica at the defaults. Transactions are counted exactly,
in process, on every engine of the scheduler (each BEGIN, explicit or not, and each pre-ping of a
pooled connection, which PostgreSQL counts as a transaction of its own)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from scheduler_service.app import SchedulerApp
from tests.support import postgres
from tests.support.cluster import cluster

#: How much shorter than the defaults (sweep 1 s, schedule poll 2 s, workers refresh 10 s).
SCALE = 5
WINDOW_SWEEPS = 50
#: Seconds at the default intervals that the window stands for.
DEFAULT_SECONDS = WINDOW_SWEEPS
BUDGET_PER_SECOND = 2


@pytest.fixture
def pg_url(scheduler_pg_template: str) -> Iterator[str]:
    with postgres.clone(scheduler_pg_template) as url:
        yield url


class Transactions:
    """Counts the transactions the scheduler's engines start (BEGINs and pre-pings)."""

    def __init__(self, app: SchedulerApp) -> None:
        self.count = 0
        threads = app.store.threads
        async_engine, _reader = app.store.async_engines()
        engines = {threads.writer, threads.reader, async_engine.sync_engine}
        for engine in engines:
            event.listen(engine, "begin", self._begin)
            self._count_pings(engine)

    def _begin(self, _conn: Any) -> None:
        self.count += 1

    def _count_pings(self, engine: Engine) -> None:
        ping = engine.dialect.do_ping

        def counted(dbapi_connection: Any) -> bool:
            self.count += 1
            return bool(ping(dbapi_connection))

        engine.dialect.do_ping = counted  # type: ignore[method-assign]


async def _sweeps(app: SchedulerApp, count: int) -> None:
    async with asyncio.timeout(120):
        while app.sweeper.sweeps < count:  # noqa: ASYNC110 - a counter, no event to wait on
            await asyncio.sleep(0.05)


async def test_an_idle_replica_makes_at_most_2_transactions_per_second(
    tmp_path: Path, pg_url: str
) -> None:
    intervals = {
        "sweep_interval": 1.0 / SCALE,
        "schedule_poll": 2.0 / SCALE,
        "workers_refresh": 10.0 / SCALE,
    }
    async with cluster(tmp_path, db=pg_url, **intervals) as running:
        app = running.scheduler
        await running.add_crawler("idle-crawler")
        assert app.orchestrator.broker.live
        counted = Transactions(app)
        # Past start-up (first passes, the crawler's registration) before counting.
        await _sweeps(app, app.sweeper.sweeps + 10)
        start = (counted.count, app.sweeper.sweeps)
        await _sweeps(app, start[1] + WINDOW_SWEEPS)
        transactions = counted.count - start[0]
        sweeps = app.sweeper.sweeps - start[1]
    # One per sweep (the expiry read) is the sweep's safety net; the rest must fit beside it.
    assert sweeps <= transactions <= BUDGET_PER_SECOND * DEFAULT_SECONDS * sweeps / WINDOW_SWEEPS
