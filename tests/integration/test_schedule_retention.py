"""Firings older than the retention are purged (settled ones only; a schedule's next tick still
fires once), and schedules created without a jitter get the default one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf import duration_pb2

from common.clock import ManualClock
from common.jobs import CrawlSpec
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1 import schedules_pb2 as sch
from scheduler_service.schedules.model import FiringOutcome, Schedule, Template
from scheduler_service.schedules.timing import DuePlan
from scheduler_service.settings import SchedulerSettings
from tests.support.cluster import Cluster, cluster
from tests.support.schedule_replicas import Replica, open_replicas

START = datetime(2026, 1, 1, 9, 45, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
async def one(scheduler_db_url: str) -> AsyncIterator[tuple[ManualClock, Replica]]:
    async with open_replicas(scheduler_db_url, count=1) as (clock, (replica,)):
        yield clock, replica


def daily(schedule_id: str) -> Schedule:
    return Schedule(
        id=schedule_id, template=Template(CrawlSpec(("octo/one",))), interval=DAY, start_time=START
    )


async def test_firings_older_than_the_retention_are_purged(
    one: tuple[ManualClock, Replica],
) -> None:
    clock, a = one
    await a.ops.create(daily("daily"))
    for day in range(1, 11):
        clock.set(START + day * DAY + timedelta(seconds=1))
        await a.timer.sync()
    # The passes purge (every 10 minutes): ticks before now - 7 days (day 3, 1 s later) are gone.
    assert a.timer.retention == timedelta(days=7)
    kept = await a.store.firings("daily", 100)
    assert sorted(f.nominal_time for f in kept) == [START + d * DAY for d in range(4, 11)]
    # A firing of an old tick left pending by a process that died: kept until recovered.
    await a.ops.create(daily("other"))
    assert await a.store.claim("other", DuePlan(START + DAY, ()), "dead", START + DAY)
    assert await a.timer.purge(clock.now()) == 0
    [pending] = await a.store.firings("other", 10)
    assert pending.outcome is FiringOutcome.PENDING
    # In batches: at most `limit` rows per transaction.
    assert await a.store.purge_firings(START + 6 * DAY, 2) == 2
    assert len(await a.store.firings("daily", 100)) == 5
    # The schedule's state does not come from its firings: the next tick fires once.
    clock.set(START + 11 * DAY + timedelta(seconds=1))
    assert await a.timer.sync() >= 1
    newest = await a.store.firings("daily", 100)
    assert [f.nominal_time for f in newest[:2]] == [START + 11 * DAY, START + 10 * DAY]
    assert len(newest) == 6 and (await a.store.get("daily")).missed_count == 0


def test_the_retention_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SchedulerSettings().schedule_firing_retention == 7 * 86400
    monkeypatch.setenv("GHPULSE_SCHEDULE_FIRING_RETENTION", "3600")
    assert SchedulerSettings().schedule_firing_retention == 3600


# -- default jitter -----------------------------------------------------------------------------


async def test_seeded_and_default_schedules_get_the_default_jitter(
    one: tuple[ManualClock, Replica],
) -> None:
    _clock, a = one
    await a.ops.seed(["octo/one"], [])
    assert (await a.store.get("config-repositories")).jitter == timedelta(hours=1)
    created = await a.ops.create(daily("explicit"))  # a jitter given (0): kept
    assert created.jitter == timedelta(0)
    defaulted = await a.ops.create(daily("defaulted"), default_jitter=True)
    assert defaulted.jitter == timedelta(hours=1)
    # The first tick is due at its nominal time plus the schedule's own delay.
    assert defaulted.next_due is not None
    assert START + DAY <= defaulted.next_due < START + DAY + timedelta(hours=1)


@pytest.fixture
async def c(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with cluster(tmp_path) as running:
        yield running


async def test_create_schedule_without_jitter_gets_the_default(c: Cluster) -> None:
    template = sch.ScheduleTemplate(crawl=runs_pb2.CrawlJob(repositories=["octo/one"]))
    unset = sch.Schedule(template=template)
    zero = sch.Schedule(template=template, jitter=duration_pb2.Duration(seconds=0))
    every_minute = sch.Schedule(template=template, interval=duration_pb2.Duration(seconds=60))
    got = {}
    for name, schedule in (("unset", unset), ("zero", zero), ("minute", every_minute)):
        request = spb.CreateScheduleRequest(schedule_id=name, schedule=schedule)
        got[name] = (await c.stub.CreateSchedule(request)).schedule.jitter.seconds
    assert got == {"unset": 3600, "zero": 0, "minute": 60}
