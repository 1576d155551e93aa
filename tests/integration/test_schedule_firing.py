"""The schedule store and firing against SQLite and PostgreSQL, with an injected clock: one firing
per tick across firers, overlap policies, catch-up after downtime, pauses, seeding."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from common.clock import ManualClock
from common.db import sync_url
from common.jobs import CrawlSpec
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.orchestration.tunables import Tunables
from scheduler_service.runs.model import RunQuery, RunState, Trigger
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.schedules.errors import ScheduleExists, ScheduleNotFound
from scheduler_service.schedules.firing import ScheduleFirer
from scheduler_service.schedules.model import FiringOutcome, OverlapPolicy, Schedule, Template
from scheduler_service.schedules.ops import ScheduleOps
from scheduler_service.schedules.store import SqlScheduleStore
from scheduler_service.schedules.timing import DuePlan

START = datetime(2026, 1, 1, 9, 45, tzinfo=UTC)
HOURLY = "0 * * * *"


@dataclass
class Env:
    clock: ManualClock
    runs: SqlRunStore
    store: SqlScheduleStore
    orchestrator: Orchestrator
    ops: ScheduleOps

    def firer(self, name: str = "a") -> ScheduleFirer:
        return ScheduleFirer(self.store, self.orchestrator, self.clock, name)

    async def process(self, schedule_id: str, name: str = "a") -> None:
        await self.firer(name).process(await self.store.get(schedule_id))

    async def runs_of(self, schedule_id: str) -> list[Any]:
        runs = await self.runs.list_runs(RunQuery(trigger=Trigger.SCHEDULE, page_size=500))
        return [r for r in runs if r.schedule_id == schedule_id]


@pytest.fixture
async def env(scheduler_db_url: str) -> AsyncIterator[Env]:
    clock = ManualClock(START)
    runs = SqlRunStore.open(scheduler_db_url)
    store = SqlScheduleStore.beside(runs)
    orchestrator = Orchestrator(runs, clock, Tunables())
    yield Env(clock, runs, store, orchestrator, ScheduleOps(store, orchestrator, clock))
    await runs.close()


def crawl(repo: str = "octo/one", **fields) -> Schedule:
    fields.setdefault("cron", HOURLY)
    return Schedule(id=fields.pop("id", "hourly"), template=Template(CrawlSpec((repo,))), **fields)


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 1, 1, hour, minute, second, tzinfo=UTC)


async def finish_all(env: Env) -> None:
    """End every active run (cancel: no crawler is connected)."""
    for run in await env.runs.list_runs(RunQuery(page_size=500)):
        if not run.state.terminal:
            await env.orchestrator.cancel(run.id, "test")


# -- schema and store -----------------------------------------------------------------------


def test_migrated_schema_keys_firings_by_schedule_and_nominal_time(scheduler_db_url: str) -> None:
    engine = create_engine(sync_url(scheduler_db_url))
    try:
        with engine.connect() as conn:
            pk = inspect(conn).get_pk_constraint("schedule_firings")["constrained_columns"]
            assert pk == ["schedule_id", "nominal_time"]
            conn.execute(
                text(
                    "INSERT INTO schedules (id, job_kind, job, labels, overlap, "
                    "catch_up_window_seconds, fire_after, created_at, updated_at) VALUES "
                    "('s', 'crawl', '{}', '{}', 'skip', 3600, "
                    "'2026-01-01', '2026-01-01', '2026-01-01')"
                )
            )
            insert = text(
                "INSERT INTO schedule_firings (schedule_id, nominal_time, outcome, claimed_at) "
                "VALUES ('s', '2026-01-01 10:00:00', 'pending', '2026-01-01')"
            )
            conn.execute(insert)
            with pytest.raises(IntegrityError):
                conn.execute(insert)
    finally:
        engine.dispose()


async def test_create_get_list_update_delete(env: Env) -> None:
    created = await env.ops.create(crawl(time_zone="Europe/Berlin"))
    assert created.fire_after == START and created.version == 1
    with pytest.raises(ScheduleExists):
        await env.ops.create(crawl())
    got = await env.store.get("hourly")
    assert got.template.spec == CrawlSpec(("octo/one",)) and got.time_zone == "Europe/Berlin"
    await env.ops.create(crawl(id="another"))
    assert [s.id for s in await env.store.list_page("", 10)] == ["another", "hourly"]
    assert [s.id for s in await env.store.list_page("another", 10)] == ["hourly"]
    updated = await env.ops.update("hourly", crawl(jitter=timedelta(seconds=30)), {"jitter"})
    assert updated.jitter == timedelta(seconds=30) and updated.version == 2
    await env.ops.delete("hourly")
    with pytest.raises(ScheduleNotFound):
        await env.store.get("hourly")


# -- firing ---------------------------------------------------------------------------------


async def test_tick_fires_once_with_schedule_trigger_and_nominal_time(env: Env) -> None:
    await env.ops.create(crawl())
    await env.process("hourly")
    assert await env.runs_of("hourly") == []
    env.clock.set(at(10, 0, 2))
    await env.process("hourly")
    await env.process("hourly")
    [run] = await env.runs_of("hourly")
    assert (run.trigger, run.nominal_time, run.state) == (
        Trigger.SCHEDULE,
        at(10),
        RunState.PENDING,
    )
    [firing] = await env.store.firings("hourly", 10)
    assert (firing.outcome, firing.run_id, firing.nominal_time) == (
        FiringOutcome.STARTED,
        run.id,
        at(10),
    )
    schedule = await env.store.get("hourly")
    assert (schedule.last_fire_time, schedule.last_run_id) == (at(10), run.id)


async def test_concurrent_firers_fire_each_tick_once(env: Env) -> None:
    await env.ops.create(crawl())
    env.clock.set(at(10, 0, 1))
    schedule = await env.store.get("hourly")
    settled = await asyncio.gather(*(env.firer(f"p{i}").process(schedule) for i in range(4)))
    assert sum(s.claimed for s in settled) == 1
    assert len(await env.runs_of("hourly")) == 1
    [firing] = await env.store.firings("hourly", 10)
    assert firing.outcome is FiringOutcome.STARTED


async def test_overlap_skip_records_the_active_run(env: Env) -> None:
    await env.ops.create(crawl())
    env.clock.set(at(10, 0, 1))
    await env.process("hourly")
    env.clock.set(at(11, 0, 1))
    await env.process("hourly")
    [run] = await env.runs_of("hourly")
    latest, first = await env.store.firings("hourly", 10)
    assert (latest.outcome, latest.run_id) == (FiringOutcome.SKIPPED, run.id)
    assert first.outcome is FiringOutcome.STARTED
    schedule = await env.store.get("hourly")
    assert (schedule.skipped_count, schedule.last_fire_time) == (1, at(11))


async def test_overlap_queue_queues_behind_the_active_run(env: Env) -> None:
    await env.ops.create(crawl(overlap=OverlapPolicy.QUEUE))
    for hour in (10, 11, 12):
        env.clock.set(at(hour, 0, 1))
        await env.process("hourly")
    runs = await env.runs_of("hourly")
    assert sorted(r.state for r in runs) == [RunState.PENDING, RunState.QUEUED]
    outcomes = [f.outcome for f in await env.store.firings("hourly", 10)]
    assert outcomes == [FiringOutcome.QUEUED, FiringOutcome.QUEUED, FiringOutcome.STARTED]
    assert (await env.store.get("hourly")).skipped_count == 0


async def test_next_tick_starts_a_new_run_once_the_previous_finished(env: Env) -> None:
    await env.ops.create(crawl())
    env.clock.set(at(10, 0, 1))
    await env.process("hourly")
    await finish_all(env)
    env.clock.set(at(11, 0, 1))
    await env.process("hourly")
    assert len(await env.runs_of("hourly")) == 2


async def test_catch_up_after_downtime_coalesces_and_records_missed(env: Env) -> None:
    await env.ops.create(crawl(catch_up_window=timedelta(hours=1)))
    env.clock.set(at(10, 0, 1))
    await env.process("hourly")
    await finish_all(env)
    # Down from 10:00:01 to 13:20: 11:00 and 12:00 are missed, 13:00 runs late.
    env.clock.set(at(13, 20))
    await env.process("hourly")
    runs = await env.runs_of("hourly")
    assert sorted(r.nominal_time for r in runs) == [at(10), at(13)]
    firings = {f.nominal_time: f.outcome for f in await env.store.firings("hourly", 10)}
    assert firings == {
        at(13): FiringOutcome.STARTED,
        at(12): FiringOutcome.MISSED,
        at(11): FiringOutcome.MISSED,
        at(10): FiringOutcome.STARTED,
    }
    assert (await env.store.get("hourly")).missed_count == 2


async def test_downtime_beyond_the_window_runs_nothing_late(env: Env) -> None:
    await env.ops.create(crawl(catch_up_window=timedelta(minutes=5)))
    env.clock.set(at(12, 30))
    await env.process("hourly")
    assert await env.runs_of("hourly") == []
    assert (await env.store.get("hourly")).missed_count == 3
    env.clock.set(at(13, 0, 1))
    await env.process("hourly")
    assert [r.nominal_time for r in await env.runs_of("hourly")] == [at(13)]


async def test_paused_schedule_does_not_fire_and_resume_does_not_catch_up(env: Env) -> None:
    await env.ops.create(crawl())
    await env.ops.set_paused("hourly", True)
    env.clock.set(at(12, 30))
    await env.process("hourly")
    await env.ops.set_paused("hourly", False)
    await env.process("hourly")
    schedule = await env.store.get("hourly")
    assert await env.runs_of("hourly") == []
    assert (schedule.missed_count, schedule.fire_after) == (0, at(12, 30))
    env.clock.set(at(13, 0, 1))
    await env.process("hourly")
    assert [r.nominal_time for r in await env.runs_of("hourly")] == [at(13)]


async def test_jitter_delays_the_run_not_the_nominal_time(env: Env) -> None:
    await env.ops.create(crawl(jitter=timedelta(minutes=10)))
    env.clock.set(at(10, 0, 1))
    settled = await env.firer().process(await env.store.get("hourly"))
    if settled.plan.fire is None:  # this tick's delay is above one second
        assert settled.next_due is not None and at(10) < settled.next_due < at(10, 10)
        env.clock.set(settled.next_due)
        await env.process("hourly")
    [run] = await env.runs_of("hourly")
    assert run.nominal_time == at(10)


async def test_interval_schedule_is_anchored_to_its_start_time(env: Env) -> None:
    await env.ops.create(crawl(cron="", interval=timedelta(minutes=20), start_time=at(9, 10)))
    env.clock.set(at(9, 50, 1))
    await env.process("hourly")
    [run] = await env.runs_of("hourly")
    assert run.nominal_time == at(9, 50)


async def test_stale_pending_firing_is_recovered_with_the_same_run(env: Env) -> None:
    await env.ops.create(crawl())
    env.clock.set(at(10, 0, 1))
    # A process claims the tick, then dies before triggering the run.
    assert await env.store.claim("hourly", DuePlan(at(10), ()), "dead", env.clock.now())
    env.clock.set(at(10, 5))
    assert await env.firer("b").recover(timedelta(minutes=1)) == 1
    [firing] = await env.store.firings("hourly", 10)
    [run] = await env.runs_of("hourly")
    assert (firing.outcome, firing.run_id, firing.scheduler_id) == (
        FiringOutcome.STARTED,
        run.id,
        "dead",
    )


# -- seeding --------------------------------------------------------------------------------


async def test_seeding_is_idempotent_and_keeps_api_changes(env: Env) -> None:
    ids = await env.ops.seed(["octo/one", "octo/two"], ["Acme"])
    assert ids == ["config-repositories", "config-org-acme"]
    seeded = await env.store.get("config-repositories")
    assert seeded.cron == "" and seeded.timing.next_after(at(10)) == at(10, 30)
    assert seeded.template.spec == CrawlSpec(("octo/one", "octo/two"))
    await env.ops.set_paused("config-repositories", True)
    await env.ops.update("config-org-acme", crawl(cron="15 * * * *"), {"cron"})
    # A restart with the same configuration changes nothing.
    await env.ops.seed(["octo/one", "octo/two"], ["Acme"])
    assert (await env.store.get("config-repositories")).version == 2
    # A restart with new targets re-targets, but keeps the pause and the cron.
    await env.ops.seed(["octo/three"], ["Acme"])
    repos = await env.store.get("config-repositories")
    assert repos.paused and repos.template.spec == CrawlSpec(("octo/three",))
    assert (await env.store.get("config-org-acme")).cron == "15 * * * *"
