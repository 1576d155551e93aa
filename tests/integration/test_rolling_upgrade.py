"""Mixed versions during a rolling upgrade: a crawler of the previous protocol (its hello without
`protocol_version`) still works against this scheduler; one of an unknown, newer protocol is
refused with FAILED_PRECONDITION and a message saying what to do."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import worker_service_pb2 as wpb
from common.proto.ghpulse.v1.worker_service_pb2_grpc import WorkerServiceStub
from crawler_service.worker import messages as crawler_messages
from scheduler_service.api.worker_messages import PROTOCOL_VERSION
from tests.support.cluster import TERMINAL, cluster
from tests.support.rpc_errors import details


async def test_a_crawler_whose_hello_has_no_protocol_version_runs_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real crawler, sending the hello of a build that predates the field (proto3: 0 = unset).
    monkeypatch.setattr(crawler_messages, "PROTOCOL_VERSION", 0)
    hello = crawler_messages.hello("old", 1, [], "0.1.0")
    assert "protocol_version" not in {field.name for field, _ in hello.hello.ListFields()}
    async with cluster(tmp_path) as c:
        await c.add_crawler("previous-release")
        run_id = (await c.trigger("test/plain")).run.id
        final = await c.wait_for_state(run_id, *TERMINAL)
    assert final.state == runs_pb2.RUN_STATE_SUCCEEDED


async def test_a_crawler_of_an_unknown_protocol_is_refused_with_failed_precondition(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        newer = PROTOCOL_VERSION + 1
        hello = wpb.WorkerHello(worker_id="future", protocol_version=newer, slots=1)
        call = WorkerServiceStub(c.channel).Connect(iter([wpb.ConnectRequest(hello=hello)]))
        rejected: Any = await asyncio.wait_for(call.read(), 10)
        assert "upgrade the schedulers before the crawlers" in rejected.rejected.reason
        assert rejected.rejected.supported_protocol_version == PROTOCOL_VERSION
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(call.read(), 10)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"crawler protocol version {newer} is not supported" in str(caught.value.details())
        info = details(caught.value)["ErrorInfo"]
        assert info.reason == "INCOMPATIBLE_PROTOCOL"  # type: ignore[attr-defined]
