"""Issue 15, defence in depth: the scheduler redacts what it stores even when a crawler (or a
client's cancel reason) sends a URL with credentials or a registered secret unredacted. A real
scheduler on a real port; the crawler is spoken by hand so nothing is redacted before the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from common import logging as ghlog
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1 import worker_service_pb2 as wpb
from common.proto.ghpulse.v1.worker_service_pb2_grpc import WorkerServiceStub
from tests.support.cluster import Cluster, cluster
from tests.support.impostor import EOF

LEAKY = "GET https://octo:hunter2@github.example/repos/a failed"
SECRET = "ghp_registeredsecret123"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """A registered secret (e.g. the GitHub token), for this test only."""
    monkeypatch.setattr(ghlog, "_SECRETS", set())
    ghlog.register_secret(SECRET)
    return SECRET


@pytest.fixture
async def c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(tmp_path, lease_ttl=60.0) as running:
        yield running


async def _requests(outgoing: asyncio.Queue[wpb.ConnectRequest | None]) -> AsyncIterator[Any]:
    while (item := await outgoing.get()) is not None:
        yield item


async def _next(call: grpc.aio.StreamStreamCall[Any, Any], kind: str) -> wpb.ConnectResponse:
    while True:
        message: Any = await call.read()
        assert message is not EOF
        if message.WhichOneof("message") == kind:
            return cast(wpb.ConnectResponse, message)


def _texts(messages: list[spb.WatchRunResponse]) -> str:
    return "\n".join(str(message) for message in messages)


async def test_a_crawlers_unredacted_report_is_stored_redacted(c: Cluster, secret: str) -> None:
    outgoing: asyncio.Queue[wpb.ConnectRequest | None] = asyncio.Queue()
    call = WorkerServiceStub(c.channel).Connect(_requests(outgoing))
    hello = wpb.WorkerHello(worker_id="leaky", protocol_version=1, slots=1)
    outgoing.put_nowait(wpb.ConnectRequest(hello=hello))
    await _next(call, "welcome")
    run_id = (await c.trigger("octo/a")).run.id
    ref = (await _next(call, "assignment")).assignment.ref
    progress = runs_pb2.StepProgress(step="alpha", current=1, total=2, message=f"{LEAKY} {secret}")
    outgoing.put_nowait(wpb.ConnectRequest(step_report=wpb.StepReport(ref=ref, progress=progress)))
    error = runs_pb2.RunError(code="GITHUB_UNAVAILABLE", message=f"{LEAKY} with {secret}")
    result = wpb.AttemptResult(ref=ref, outcome=wpb.ATTEMPT_OUTCOME_FAILED, error=error)
    outgoing.put_nowait(wpb.ConnectRequest(result=result))

    done = await c.wait_for_state(run_id, runs_pb2.RUN_STATE_FAILED)
    assert (
        done.error.message == "GET https://[redacted]@github.example/repos/a failed with [redacted]"
    )
    stored = _texts(await c.watch(run_id))
    assert "hunter2" not in stored and secret not in stored
    assert "alpha" in stored and "[redacted]" in stored  # the progress event is there, redacted
    outgoing.put_nowait(None)
    call.cancel()


async def test_a_cancel_reason_is_stored_redacted(c: Cluster) -> None:
    run_id = (await c.trigger("octo/b")).run.id  # no crawler: it stays pending
    await c.stub.CancelRun(spb.CancelRunRequest(run_id=run_id, reason=LEAKY))
    events = await c.watch(run_id)
    changes = [m.event.state_changed for m in events if m.event.HasField("state_changed")]
    [reason] = [c.reason for c in changes if c.state == runs_pb2.RUN_STATE_CANCELLED]
    assert reason == "GET https://[redacted]@github.example/repos/a failed"
