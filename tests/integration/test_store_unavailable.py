"""A database the scheduler cannot reach gives UNAVAILABLE with a retry hint, not INTERNAL."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from scheduler_service.app import SchedulerApp
from tests.support.cluster import scheduler_settings
from tests.support.processes import free_port

UNREACHABLE = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=2"


async def test_trigger_with_the_database_down_is_unavailable(tmp_path: Path) -> None:
    settings = scheduler_settings(tmp_path, db=UNREACHABLE, migrate=False, schedules_enabled=False)
    async with SchedulerApp(settings) as app, grpc.aio.insecure_channel(app.address) as channel:
        request = spb.TriggerRunRequest(crawl=runs_pb2.CrawlJob(repositories=["octo/app"]))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await SchedulerServiceStub(channel).TriggerRun(request)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(info.value)  # type: ignore[arg-type]
    assert status is not None
    assert any(detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for detail in status.details)
