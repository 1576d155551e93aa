"""Issue 12: 2,000 WatchRun streams opened at once from one process. Each one is either accepted
(its snapshot arrives) or refused with RESOURCE_EXHAUSTED and a log line; none is CANCELLED.

Before the fix gRPC's core held at most ~1,000 calls the server had not yet picked up and dropped
the rest of the burst at random as a bare CANCELLED, with nothing logged."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import structlog

from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from tests.support.cluster import Cluster, cluster
from tests.support.impostor import EOF

BURST = 2000
#: Per client (one process, one peer address): the burst's last streams are over it.
PER_CLIENT = 1800


@pytest.fixture
async def c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(
        tmp_path,
        max_watchers_per_run=BURST,
        max_watchers_per_client=PER_CLIENT,
        # Quiet watchers re-read the store every sweep interval (0.1 s in the fast test timings):
        # 1,800 of them at 10 reads a second would measure SQLite, not the burst.
        sweep_interval=5.0,
    ) as running:
        yield running


async def _first(call: grpc.aio.UnaryStreamCall[spb.WatchRunRequest, spb.WatchRunResponse]) -> str:
    """'snapshot' once the watch is open, else the status code that ended it."""
    try:
        message = await call.read()
    except grpc.aio.AioRpcError as error:
        return error.code().name
    assert message is not EOF
    assert isinstance(message, spb.WatchRunResponse)
    return "snapshot" if message.HasField("snapshot") else "event"


async def test_a_burst_of_watchers_is_accepted_or_refused_never_cancelled(c: Cluster) -> None:
    run = (await c.trigger("test/gated")).run  # stays running: every stream stays open
    request = spb.WatchRunRequest(run_id=run.id)
    calls = [c.stub.WatchRun(request) for _ in range(BURST)]
    with structlog.testing.capture_logs() as logs:
        outcomes = Counter(await asyncio.gather(*(_first(call) for call in calls)))
    for call in calls:
        call.cancel()
    c.open_gate(run.id)
    assert outcomes == {"snapshot": PER_CLIENT, "RESOURCE_EXHAUSTED": BURST - PER_CLIENT}
    refusals = [line for line in logs if line["event"] == "watch.refused"]
    assert len(refusals) == BURST - PER_CLIENT
    assert refusals[0]["run_id"] == run.id
    assert refusals[0]["limit"] == PER_CLIENT
