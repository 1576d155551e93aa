"""The WorkerService stream as the scheduler serves it, driven by a hand-written crawler: leases,
fencing and in-band rejections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import worker_service_pb2 as wpb
from common.proto.ghpulse.v1.worker_service_pb2_grpc import WorkerServiceStub
from tests.support.cluster import TERMINAL, Cluster, cluster
from tests.support.impostor import EOF

#: How long a message may take to arrive before the test fails: a bound, never a delay (a loaded
#: machine once took over 10 s to answer a heartbeat).
RECEIVE_BOUND = 30.0


@pytest.fixture
async def c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    # A lease short enough for the stale-attempt test to wait one out, yet seconds longer than
    # an event loop stalls on a loaded machine (a real crawler loses it only if silent that long);
    # a grace the reconnect test never outlasts.
    async with cluster(
        tmp_path, db=scheduler_db_url, lease_ttl=6.0, reconnect_grace=30.0
    ) as running:
        yield running


class RawCrawler:
    """A crawler speaking the protocol by hand: sends what the test says, records what it gets."""

    def __init__(self, channel: grpc.aio.Channel, worker_id: str) -> None:
        self._outgoing: asyncio.Queue[wpb.ConnectRequest | None] = asyncio.Queue()
        self.call = WorkerServiceStub(channel).Connect(self._requests())
        self.worker_id = worker_id

    async def _requests(self) -> AsyncIterator[wpb.ConnectRequest]:
        while (item := await self._outgoing.get()) is not None:
            yield item

    def send(self, request: wpb.ConnectRequest) -> None:
        self._outgoing.put_nowait(request)

    async def receive(self, kind: str) -> wpb.ConnectResponse:
        """The next message of `kind`, skipping others (e.g. heartbeat acks)."""
        while True:
            message: Any = await asyncio.wait_for(self.call.read(), RECEIVE_BOUND)
            assert message is not EOF, "the scheduler ended the stream"
            if message.WhichOneof("message") == kind:
                return cast(wpb.ConnectResponse, message)

    def hello(self, slots: int = 1, protocol_version: int = 1) -> None:
        self.send(
            wpb.ConnectRequest(
                hello=wpb.WorkerHello(
                    worker_id=self.worker_id, protocol_version=protocol_version, slots=slots
                )
            )
        )

    def close(self) -> None:
        self._outgoing.put_nowait(None)
        self.call.cancel()


def progress(ref: wpb.AttemptRef) -> wpb.ConnectRequest:
    return wpb.ConnectRequest(
        step_report=wpb.StepReport(
            ref=ref, progress=runs_pb2.StepProgress(step="alpha", current=1, total=2)
        )
    )


async def test_a_stale_attempt_is_refused_in_band(c: Cluster) -> None:
    stale = RawCrawler(c.channel, "silent")
    stale.hello()
    await stale.receive("welcome")
    run_id = (await c.trigger("test/plain")).run.id
    assignment = (await stale.receive("assignment")).assignment
    assert (assignment.ref.run_id, assignment.ref.attempt) == (run_id, 1)
    # Draining: it is never given the run again, however late the real crawler connects.
    stale.send(wpb.ConnectRequest(drain=wpb.WorkerDrain()))
    # No heartbeat: the lease expires, the run goes to a real crawler as attempt 2.
    await c.add_crawler("healthy")
    final = await c.wait_for_state(run_id, *TERMINAL)
    assert (final.state, final.attempt) == (runs_pb2.RUN_STATE_SUCCEEDED, 2)
    # The old holder's late report is refused on its stream, which stays open.
    stale.send(progress(assignment.ref))
    refused = (await stale.receive("abandon")).abandon
    assert (refused.ref.run_id, refused.ref.attempt) == (run_id, 1)
    stale.send(wpb.ConnectRequest(heartbeat=wpb.WorkerHeartbeat(in_flight=[])))
    await stale.receive("heartbeat_ack")
    stale.close()


async def test_heartbeat_for_an_attempt_not_held_is_answered_with_abandon(c: Cluster) -> None:
    crawler = RawCrawler(c.channel, "confused")
    crawler.hello()
    await crawler.receive("welcome")
    ghost = wpb.AttemptRef(run_id="run_ghost", attempt=3)
    crawler.send(wpb.ConnectRequest(heartbeat=wpb.WorkerHeartbeat(in_flight=[ghost])))
    ack = (await crawler.receive("heartbeat_ack")).heartbeat_ack
    assert list(ack.renewed) == []
    assert (await crawler.receive("abandon")).abandon.ref == ghost
    crawler.close()


@pytest.mark.parametrize(
    ("version", "slots", "reason"),
    [(99, 1, "protocol version"), (1, 0, "slots")],
)
async def test_a_bad_hello_is_rejected_with_a_message(
    c: Cluster, version: int, slots: int, reason: str
) -> None:
    crawler = RawCrawler(c.channel, "odd")
    crawler.hello(slots=slots, protocol_version=version)
    rejected = (await crawler.receive("rejected")).rejected
    assert reason in rejected.reason
    assert rejected.supported_protocol_version == 1
    crawler.close()


async def test_reattach_after_reconnect_keeps_the_attempt(c: Cluster) -> None:
    first = RawCrawler(c.channel, "flaky")
    first.hello()
    await first.receive("welcome")
    run_id = (await c.trigger("test/plain")).run.id
    ref = (await first.receive("assignment")).assignment.ref
    first.close()  # the stream breaks; the crawler comes back within the grace
    again = RawCrawler(c.channel, "flaky")
    again.send(
        wpb.ConnectRequest(
            hello=wpb.WorkerHello(worker_id="flaky", protocol_version=1, slots=1, in_flight=[ref])
        )
    )
    welcome = (await again.receive("welcome")).welcome
    assert list(welcome.reattached) == [ref]
    again.send(
        wpb.ConnectRequest(result=wpb.AttemptResult(ref=ref, outcome=wpb.ATTEMPT_OUTCOME_SUCCEEDED))
    )
    final = await c.wait_for_state(run_id, *TERMINAL)
    assert (final.state, final.attempt) == (runs_pb2.RUN_STATE_SUCCEEDED, 1)
    again.close()


async def test_a_database_error_mid_stream_keeps_the_stream(
    c: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    crawler = RawCrawler(c.channel, "steady")
    crawler.hello()
    await crawler.receive("welcome")
    run_id = (await c.trigger("test/plain")).run.id
    ref = (await crawler.receive("assignment")).assignment.ref
    store = c.scheduler.orchestrator.store
    record_steps = store.record_steps
    failures: list[tuple[object, ...]] = []
    failed = asyncio.Event()

    async def unavailable_once(*args: object, **kwargs: object) -> object:
        if not failures:
            failures.append(args)
            failed.set()
            raise ConnectionError("database away")
        return await record_steps(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "record_steps", unavailable_once)
    crawler.send(progress(ref))  # its (batched) write fails: logged, the report is lost
    await asyncio.wait_for(failed.wait(), RECEIVE_BOUND)
    crawler.send(wpb.ConnectRequest(heartbeat=wpb.WorkerHeartbeat(in_flight=[ref])))
    ack = (await crawler.receive("heartbeat_ack")).heartbeat_ack
    assert list(ack.renewed) == [ref] and len(failures) == 1
    crawler.send(progress(ref))
    crawler.send(
        wpb.ConnectRequest(result=wpb.AttemptResult(ref=ref, outcome=wpb.ATTEMPT_OUTCOME_SUCCEEDED))
    )
    final = await c.wait_for_state(run_id, *TERMINAL)
    assert (final.state, final.attempt) == (runs_pb2.RUN_STATE_SUCCEEDED, 1)
    assert [(s.name, s.current) for s in final.steps] == [("alpha", 1)]
    crawler.close()
