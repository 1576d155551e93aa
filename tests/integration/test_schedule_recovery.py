"""Schedules recovering from failures, on SQLite and PostgreSQL with an injected clock: a firing
whose process died after creating the run but before recording it, and a timer whose sync hits a
database error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from common.clock import ManualClock
from common.jobs import CrawlSpec
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.orchestration.tunables import Tunables
from scheduler_service.runs.model import Disposition, RunQuery, Trigger
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.schedules.firing import ScheduleFirer, firing_request_id, trigger_command
from scheduler_service.schedules.model import FiringOutcome, Schedule, Template
from scheduler_service.schedules.ops import ScheduleOps
from scheduler_service.schedules.store import SqlScheduleStore
from scheduler_service.schedules.timer import ScheduleTimer
from scheduler_service.schedules.timing import DuePlan

TEN = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


class FailingFirstSync(SqlScheduleStore):
    """The first read of a sync fails like a database that went away for a moment."""

    failures = 1

    async def next_due(self) -> datetime | None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database away")
        return await super().next_due()


@dataclass
class Env:
    clock: ManualClock
    runs: SqlRunStore
    store: FailingFirstSync
    orchestrator: Orchestrator

    def firer(self, name: str) -> ScheduleFirer:
        return ScheduleFirer(self.store, self.orchestrator, self.clock, name)


@pytest.fixture
async def env(scheduler_db_url: str) -> AsyncIterator[Env]:
    clock = ManualClock(TEN - timedelta(minutes=15))
    runs = SqlRunStore.open(scheduler_db_url)
    store = FailingFirstSync(*runs.async_engines())
    orchestrator = Orchestrator(runs, clock, Tunables())
    await ScheduleOps(store, orchestrator, clock).create(
        Schedule(id="hourly", cron="0 * * * *", template=Template(CrawlSpec(("octo/one",))))
    )
    yield Env(clock, runs, store, orchestrator)
    await runs.close()


async def test_a_recovered_firing_whose_run_exists_records_that_run(env: Env) -> None:
    env.clock.set(TEN + timedelta(seconds=1))
    schedule = await env.store.get("hourly")
    # A process claims the tick and triggers its run, then dies before recording the outcome.
    assert await env.store.claim("hourly", DuePlan(TEN, ()), "dead", env.clock.now())
    command = trigger_command(schedule, TEN, firing_request_id("hourly", TEN))
    run, disposition = await env.orchestrator.trigger(command)
    assert disposition is Disposition.CREATED
    env.clock.advance(timedelta(minutes=5))

    assert await env.firer("b").recover(timedelta(minutes=1)) == 1

    [firing] = await env.store.firings("hourly", 10)
    assert (firing.outcome, firing.run_id, firing.scheduler_id) == (
        FiringOutcome.STARTED,
        run.id,
        "dead",
    )
    runs = await env.runs.list_runs(RunQuery(trigger=Trigger.SCHEDULE))
    assert [r.id for r in runs] == [run.id]


async def test_a_database_error_in_a_sync_does_not_stop_the_timer(env: Env) -> None:
    env.clock.set(TEN + timedelta(seconds=1))
    timer = ScheduleTimer(env.store, env.firer("a"), env.clock, timedelta(seconds=0.1))
    with capture_logs() as logs:
        await timer.start()
        try:
            async with asyncio.timeout(30):
                # The timer's own periodic sync does the work: there is no event to wait on.
                while not await env.store.firings("hourly", 10):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            await timer.stop(drain_seconds=60)  # never cut a sync short mid-query
    assert env.store.failures == 0
    errors = [entry for entry in logs if entry["event"] == "schedules.error"]
    assert len(errors) == 1 and errors[0]["log_level"] == "error"
    [firing] = await env.store.firings("hourly", 10)
    assert firing.nominal_time == TEN
