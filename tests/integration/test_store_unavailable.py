"""A database the scheduler cannot reach gives UNAVAILABLE with a retry hint (the one error
mapping), not INTERNAL or UNKNOWN: to a client triggering a run, and to a crawler connecting."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1 import worker_service_pb2 as wpb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from common.proto.ghpulse.v1.worker_service_pb2_grpc import WorkerServiceStub
from scheduler_service.api.worker_messages import PROTOCOL_VERSION
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


async def test_connect_with_the_database_down_is_unavailable(tmp_path: Path) -> None:
    settings = scheduler_settings(tmp_path, db=UNREACHABLE, migrate=False, schedules_enabled=False)
    hello = wpb.WorkerHello(worker_id="w1", slots=1, protocol_version=PROTOCOL_VERSION)
    async with SchedulerApp(settings) as app, grpc.aio.insecure_channel(app.address) as channel:
        call = WorkerServiceStub(channel).Connect(iter([wpb.ConnectRequest(hello=hello)]))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _message in call:
                pass
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(info.value)  # type: ignore[arg-type]
    assert status is not None
    assert any(detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for detail in status.details)
