"""The schedule RPCs of SchedulerService: malformed-but-parseable input is INVALID_ARGUMENT with a
BadRequest, never INTERNAL — on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1 import schedules_pb2 as sch
from tests.support.cluster import Cluster, cluster
from tests.support.rpc_errors import violations

TEMPLATE = sch.ScheduleTemplate(crawl=runs_pb2.CrawlJob(repositories=["octo/one"]))


@pytest.fixture
async def c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(tmp_path, db=scheduler_db_url, schedule_poll=0.2) as running:
        yield running


async def _fields(call: Any) -> dict[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return violations(info.value)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"interval": duration_pb2.Duration(seconds=10**15)}, "schedule.interval"),
        ({"catch_up_window": duration_pb2.Duration(seconds=10**15)}, "schedule.catch_up_window"),
        ({"jitter": duration_pb2.Duration(seconds=10**15)}, "schedule.jitter"),
        ({"start_time": timestamp_pb2.Timestamp(seconds=10**12)}, "schedule.start_time"),
        ({"time_zone": "UTC\x00"}, "schedule.time_zone"),
    ],
)
async def test_create_schedule_bad_values(c: Cluster, fields: dict[str, Any], field: str) -> None:
    request = spb.CreateScheduleRequest(
        schedule_id="bad", schedule=sch.Schedule(template=TEMPLATE, **fields)
    )
    assert field in await _fields(c.stub.CreateSchedule(request))


async def test_schedule_ids_and_tokens_with_nul(c: Cluster) -> None:
    get = spb.GetScheduleRequest(schedule_id="a\x00")
    assert "schedule_id" in await _fields(c.stub.GetSchedule(get))
    token = base64.urlsafe_b64encode(b"a\x00").decode()
    listing = spb.ListSchedulesRequest(page_token=token)
    assert "page_token" in await _fields(c.stub.ListSchedules(listing))
