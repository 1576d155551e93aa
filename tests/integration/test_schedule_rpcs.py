"""The schedule RPCs on a real in-process scheduler (real port, real SQLite file), and a change
made through one replica reaching another without restart."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1 import schedules_pb2 as sch
from tests.support.cluster import Cluster, cluster
from tests.support.rpc_errors import violations

WAIT = 30.0  # a bound on a loaded machine, never a delay


@pytest.fixture
async def c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(tmp_path, db=scheduler_db_url, schedule_poll=0.2) as running:
        yield running


def template(*repositories: str) -> sch.ScheduleTemplate:
    return sch.ScheduleTemplate(crawl=runs_pb2.CrawlJob(repositories=list(repositories)))


async def create(c: Cluster, schedule_id: str, **fields) -> sch.Schedule:
    fields.setdefault("template", template("octo/one"))
    request = spb.CreateScheduleRequest(schedule_id=schedule_id, schedule=sch.Schedule(**fields))
    return (await c.stub.CreateSchedule(request)).schedule


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait for a condition another task or process makes true (bounded)."""
    async with asyncio.timeout(WAIT):
        # The condition is in the database or another replica: there is no event to wait on.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_create_defaults_and_get(c: Cluster) -> None:
    created = await create(c, "hourly")
    assert created.cron == "30 * * * *"
    assert created.time_zone == "UTC"
    assert created.overlap == sch.OVERLAP_POLICY_SKIP
    assert created.catch_up_window.ToSeconds() == 3600
    assert created.HasField("next_fire_time") and created.next_fire_time.ToDatetime().minute == 30
    got = await c.stub.GetSchedule(spb.GetScheduleRequest(schedule_id="hourly"))
    assert got.schedule.template.crawl.repositories == ["octo/one"]
    assert list(got.recent_firings) == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "61 * * * *"}, "schedule.cron"),
        ({"cron": "* * *"}, "schedule.cron"),
        ({"interval": duration_pb2.Duration(nanos=1000)}, "schedule.interval"),
        ({"time_zone": "Nowhere/Land"}, "schedule.time_zone"),
        ({"template": template("not a repo")}, "schedule.template.crawl.repositories[0]"),
        ({"template": sch.ScheduleTemplate()}, "schedule.template.job"),
    ],
)
async def test_invalid_schedule_is_invalid_argument_with_a_field_violation(
    c: Cluster, fields: dict[str, Any], field: str
) -> None:
    fields.setdefault("template", template("octo/one"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await c.stub.CreateSchedule(
            spb.CreateScheduleRequest(schedule_id="bad", schedule=sch.Schedule(**fields))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(caught.value)


async def test_duplicate_and_missing_ids(c: Cluster) -> None:
    await create(c, "hourly")
    with pytest.raises(grpc.aio.AioRpcError) as exists:
        await create(c, "hourly")
    assert exists.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await c.stub.GetSchedule(spb.GetScheduleRequest(schedule_id="nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_pages_by_id(c: Cluster) -> None:
    for name in ("c", "a", "b"):
        await create(c, name)
    first = await c.stub.ListSchedules(spb.ListSchedulesRequest(page_size=2))
    assert [s.id for s in first.schedules] == ["a", "b"]
    second = await c.stub.ListSchedules(
        spb.ListSchedulesRequest(page_size=2, page_token=first.next_page_token)
    )
    assert [s.id for s in second.schedules] == ["c"] and second.next_page_token == ""


async def test_update_changes_only_the_masked_fields(c: Cluster) -> None:
    await create(c, "hourly", time_zone="Europe/Berlin", jitter=duration_pb2.Duration(seconds=5))
    request = spb.UpdateScheduleRequest(
        schedule=sch.Schedule(id="hourly", cron="0 6 * * 1", time_zone="UTC"),
        update_mask=field_mask_pb2.FieldMask(paths=["cron"]),
    )
    updated = (await c.stub.UpdateSchedule(request)).schedule
    assert (updated.cron, updated.time_zone, updated.jitter.seconds) == (
        "0 6 * * 1",
        "Europe/Berlin",
        5,
    )
    bad = spb.UpdateScheduleRequest(
        schedule=sch.Schedule(id="hourly"), update_mask=field_mask_pb2.FieldMask(paths=["id"])
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await c.stub.UpdateSchedule(bad)
    assert "update_mask" in violations(caught.value)


async def test_pause_resume_delete(c: Cluster) -> None:
    await create(c, "hourly")
    paused = (await c.stub.PauseSchedule(spb.PauseScheduleRequest(schedule_id="hourly"))).schedule
    assert paused.paused and not paused.HasField("next_fire_time")
    resumed = (
        await c.stub.ResumeSchedule(spb.ResumeScheduleRequest(schedule_id="hourly"))
    ).schedule
    assert not resumed.paused and resumed.HasField("next_fire_time")
    await c.stub.DeleteSchedule(spb.DeleteScheduleRequest(schedule_id="hourly"))
    listed = await c.stub.ListSchedules(spb.ListSchedulesRequest())
    assert list(listed.schedules) == []


async def test_run_now_honours_the_overlap_policy(c: Cluster) -> None:
    await create(c, "skip")
    first = await c.stub.RunScheduleNow(spb.RunScheduleNowRequest(schedule_id="skip"))
    assert first.disposition == spb.DISPOSITION_CREATED
    assert (first.run.trigger, first.run.schedule_id) == (runs_pb2.TRIGGER_SCHEDULE, "skip")
    again = await c.stub.RunScheduleNow(spb.RunScheduleNowRequest(schedule_id="skip"))
    assert (again.disposition, again.run.id) == (spb.DISPOSITION_JOINED, first.run.id)
    await create(c, "queue", overlap=sch.OVERLAP_POLICY_QUEUE)
    queued = await c.stub.RunScheduleNow(spb.RunScheduleNowRequest(schedule_id="queue"))
    assert queued.disposition == spb.DISPOSITION_QUEUED


async def settled_firings(c: Cluster, schedule_id: str) -> list[sch.ScheduleFiring]:
    """The schedule's firings that have an outcome, oldest first (a claimed tick has none until
    its run is triggered)."""
    got = await c.stub.GetSchedule(spb.GetScheduleRequest(schedule_id=schedule_id))
    return [f for f in reversed(got.recent_firings) if f.outcome != sch.FIRING_OUTCOME_UNSPECIFIED]


async def test_interval_schedule_fires_with_nominal_times_and_skips_overlaps(c: Cluster) -> None:
    await create(c, "every-second", interval=duration_pb2.Duration(seconds=1))
    started_then_skipped = (sch.FIRING_OUTCOME_STARTED, sch.FIRING_OUTCOME_SKIPPED)

    async def a_tick_was_skipped_after_a_start() -> bool:
        outcomes = [f.outcome for f in await settled_firings(c, "every-second")]
        return started_then_skipped in itertools.pairwise(
            o for o in outcomes if o != sch.FIRING_OUTCOME_MISSED
        )

    await until(a_tick_was_skipped_after_a_start)
    firings = await settled_firings(c, "every-second")
    # A tick settled late (a loaded machine) is MISSED, never fired: one run started, and every
    # later tick that did fire joined it, because no crawler ever finishes it.
    started = [f for f in firings if f.outcome == sch.FIRING_OUTCOME_STARTED]
    assert len(started) == 1
    first = started[0]
    later = [f for f in firings if f.nominal_time.ToDatetime() > first.nominal_time.ToDatetime()]
    assert {f.outcome for f in later} <= {sch.FIRING_OUTCOME_SKIPPED, sch.FIRING_OUTCOME_MISSED}
    skipped = [f for f in later if f.outcome == sch.FIRING_OUTCOME_SKIPPED]
    assert skipped and {f.run_id for f in skipped} == {first.run_id}
    run = (await c.stub.GetRun(spb.GetRunRequest(run_id=first.run_id))).run
    assert run.nominal_time == first.nominal_time
    # Every tick has its row, one interval apart.
    ticks = [f.nominal_time.ToDatetime() for f in firings]
    assert {b - a for a, b in itertools.pairwise(ticks)} == {timedelta(seconds=1)}
    got = await c.stub.GetSchedule(spb.GetScheduleRequest(schedule_id="every-second"))
    assert got.schedule.skipped_count >= 1 and got.schedule.last_run_id == first.run_id


async def test_change_through_one_replica_reaches_the_other(
    tmp_path: Path, scheduler_db_url: str
) -> None:
    # Replica A only serves the API; replica B fires. Both use one database.
    async with (
        cluster(tmp_path, db=scheduler_db_url, schedules_enabled=False, schedule_poll=0.2) as a,
        cluster(tmp_path, db=scheduler_db_url, schedule_poll=0.2) as b,
    ):
        await create(a, "every-second", interval=duration_pb2.Duration(seconds=1))

        async def fired() -> bool:
            got = await a.stub.GetSchedule(spb.GetScheduleRequest(schedule_id="every-second"))
            return len(got.recent_firings) >= 1

        await until(fired)
        got = await a.stub.GetSchedule(spb.GetScheduleRequest(schedule_id="every-second"))
        assert got.recent_firings[0].scheduler_id == b.scheduler.schedules.firer.scheduler_id
        await a.stub.PauseSchedule(spb.PauseScheduleRequest(schedule_id="every-second"))
        timer = b.scheduler.schedules.timer
        # A pass of B's timer after the pause: it waits for a pass in progress (and its firings).
        await timer.sync()
        before = await a.stub.GetSchedule(spb.GetScheduleRequest(schedule_id="every-second"))
        await timer.sync()
        after = await a.stub.GetSchedule(spb.GetScheduleRequest(schedule_id="every-second"))
        assert len(after.recent_firings) == len(before.recent_firings)
