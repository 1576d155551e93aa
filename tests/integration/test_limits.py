"""Limits on every input and the issue's 'wrong statuses' attacks, now INVALID_ARGUMENT (or
RESOURCE_EXHAUSTED with RetryInfo for rates) on SQLite and PostgreSQL: nothing INTERNAL, no
echo of a huge value, no schedule saved by a failed call."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.protobuf import duration_pb2

from common.proto.ghpulse.v1 import runs_pb2, schedules_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from tests.support.cluster import Cluster, cluster
from tests.support.rpc_errors import details

CRAWL = runs_pb2.CrawlJob(repositories=["octo/a"])
#: Far below gRPC's 8 KiB metadata limit: a status never approaches it, whatever was sent.
MAX_STATUS_BYTES = 4096


@pytest.fixture
async def c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(
        tmp_path,
        db=scheduler_db_url,
        max_watchers_per_run=2,
        max_watchers_per_client=3,
        trigger_rate=0.001,
        trigger_burst=5,
    ) as running:
        yield running


async def _error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def _invalid(call: Any) -> list[str]:
    error = await _error(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    size = sum(len(k) + len(v) for k, v in cast(Any, error.trailing_metadata()) or ())
    assert size < MAX_STATUS_BYTES
    return [v.field for v in details(error)["BadRequest"].field_violations]  # type: ignore[attr-defined]


def _token(created: str, run_id: str) -> str:
    raw = json.dumps({"c": created, "i": run_id}).encode()
    return base64.urlsafe_b64encode(raw).decode()


async def test_a_huge_value_is_not_echoed(c: Cluster) -> None:
    huge = "x" * 5000
    crawl = runs_pb2.CrawlJob(repositories=[f"octo/{huge}"])
    error = await _error(c.stub.TriggerRun(spb.TriggerRunRequest(crawl=crawl)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert huge not in (error.details() or "")
    assert len(error.details() or "") < 400
    fields = await _invalid(
        c.stub.TriggerRun(spb.TriggerRunRequest(crawl=CRAWL, labels={huge: "v"}))
    )
    assert all(len(field) < 100 for field in fields)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            spb.ListRunsRequest(page_token=_token("0001-01-01T00:00:00+14:00", "run_x")),
            "page_token",
        ),
        (
            spb.ListRunsRequest(page_token=_token("2026-01-01T00:00:00+00:00", "run_\x00")),
            "page_token",
        ),
        (spb.ListRunsRequest(page_token="%%%"), "page_token"),
        (spb.ListRunsRequest(labels={f"k{i}": "v" for i in range(1000)}), "labels"),
        (spb.ListRunsRequest(states=[runs_pb2.RUN_STATE_PENDING] * 100), "states"),
    ],
)
async def test_list_runs_limits(c: Cluster, request_: spb.ListRunsRequest, expected: str) -> None:
    started = time.monotonic()
    assert expected in await _invalid(c.stub.ListRuns(request_))
    # Refused before any query: never a database busy for minutes.
    assert time.monotonic() - started < 5


async def test_list_schedules_garbage_token(c: Cluster) -> None:
    request = spb.ListSchedulesRequest(page_token="%%%")
    assert await _invalid(c.stub.ListSchedules(request)) == ["page_token"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"deadline": duration_pb2.Duration(seconds=5, nanos=-5)}, ["deadline"]),
        ({"schedule_id": "s" * 200}, ["schedule_id"]),
        (
            {"trigger": runs_pb2.TRIGGER_SCHEDULE, "schedule_id": "nightly"},
            ["trigger", "schedule_id"],
        ),
        ({"on_conflict": 99}, ["on_conflict"]),
    ],
)
async def test_trigger_run_limits(c: Cluster, fields: dict[str, Any], expected: list[str]) -> None:
    request = spb.TriggerRunRequest(crawl=CRAWL, **fields)
    assert await _invalid(c.stub.TriggerRun(request)) == expected


async def test_cancel_reason_limits(c: Cluster) -> None:
    run = (await c.stub.TriggerRun(spb.TriggerRunRequest(crawl=CRAWL))).run
    for reason in ("nul\x00", "r" * 2000):
        request = spb.CancelRunRequest(run_id=run.id, reason=reason)
        assert await _invalid(c.stub.CancelRun(request)) == ["reason"]
    assert await _invalid(c.stub.GetRun(spb.GetRunRequest(run_id="r" * 300))) == ["run_id"]


def _schedule(**fields: Any) -> schedules_pb2.Schedule:
    return schedules_pb2.Schedule(template=schedules_pb2.ScheduleTemplate(crawl=CRAWL), **fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"interval": duration_pb2.Duration(seconds=315576000000)}, "schedule.interval"),
        ({"interval": duration_pb2.Duration(seconds=60, nanos=-1)}, "schedule.interval"),
        ({"cron": "0 3 * * *", "overlap": 99}, "schedule.overlap"),
        ({"cron": "0 3 * * *", "time_zone": "Europe/" + "x" * 5000}, "schedule.time_zone"),
    ],
)
async def test_schedule_limits_save_nothing(
    c: Cluster, fields: dict[str, Any], expected: str
) -> None:
    request = spb.CreateScheduleRequest(schedule_id="bad", schedule=_schedule(**fields))
    assert expected in await _invalid(c.stub.CreateSchedule(request))
    assert list((await c.stub.ListSchedules(spb.ListSchedulesRequest())).schedules) == []
    missing = await _error(c.stub.GetSchedule(spb.GetScheduleRequest(schedule_id="bad")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_malformed_protobuf_is_invalid_argument(c: Cluster) -> None:
    call = c.channel.unary_unary(
        "/ghpulse.v1.SchedulerService/TriggerRun",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    error = await _error(call(b"\x0a\xff\xff\xff\xff\x0f"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Error" not in (error.details() or "")
    assert "protobuf" in (error.details() or "")


async def test_watchers_per_run_and_per_client(c: Cluster) -> None:
    gated = runs_pb2.CrawlJob(repositories=["test/gated"])
    run = (await c.stub.TriggerRun(spb.TriggerRunRequest(crawl=gated))).run
    other = (await c.stub.TriggerRun(spb.TriggerRunRequest(crawl=CRAWL))).run
    streams = [c.stub.WatchRun(spb.WatchRunRequest(run_id=run.id)) for _ in range(2)]
    for stream in streams:
        await stream.read()  # the snapshot: the watch is open
    third = c.stub.WatchRun(spb.WatchRunRequest(run_id=run.id))
    error = await _error(third.read())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "RetryInfo" in details(error)
    fourth = c.stub.WatchRun(spb.WatchRunRequest(run_id=other.id))
    await fourth.read()
    fifth = c.stub.WatchRun(spb.WatchRunRequest(run_id=other.id))
    assert (await _error(fifth.read())).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for stream in [*streams, fourth]:
        stream.cancel()
    c.open_gate(run.id)


async def test_trigger_rate(c: Cluster) -> None:
    # Burst 5 at 0.001/s: the sixth trigger within the test is over the rate.
    for index in range(5):
        crawl = runs_pb2.CrawlJob(repositories=[f"octo/r{index}"])
        await c.stub.TriggerRun(spb.TriggerRunRequest(crawl=crawl))
    error = await _error(c.stub.TriggerRun(spb.TriggerRunRequest(crawl=CRAWL)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "RetryInfo" in details(error)
