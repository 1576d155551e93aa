"""A scripted, in-process scheduler for testing the crawler's `Worker` over a real gRPC stream.

It records every message the crawler sends, answers hellos (welcome, optionally held back or
abandoning attempts) and heartbeats (ack) on its own unless told not to, and lets a test push
assignments, cancels and abandons, and drop the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2

from common.jobs import CrawlSpec, JobSpec, job_to_pb
from common.proto.ghpulse.v1 import worker_service_pb2 as pb
from common.proto.ghpulse.v1 import worker_service_pb2_grpc as pb_grpc
from crawler_service.worker.messages import struct_from

Ref = tuple[str, int]
_DROP = object()
#: How long `wait_for` waits before failing the test (a bound, never a delay).
WAIT_TIMEOUT = 10.0


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(timedelta(seconds=seconds))
    return duration


def ref_of(request: pb.ConnectRequest) -> Ref | None:
    """The attempt a step report or result is about."""
    which = request.WhichOneof("message")
    if which == "step_report":
        return (request.step_report.ref.run_id, request.step_report.ref.attempt)
    if which == "result":
        return (request.result.ref.run_id, request.result.ref.attempt)
    return None


def describe(request: pb.ConnectRequest) -> str:
    """A short label: 'hello', 'heartbeat', 'drain', 'result', 'started:fetch', ..."""
    which = request.WhichOneof("message")
    if which != "step_report":
        return str(which)
    report = request.step_report
    kind = report.WhichOneof("kind")
    return f"{kind}:{getattr(report, str(kind)).step}"


class FakeScheduler(pb_grpc.WorkerServiceServicer):
    """Serves `WorkerService` on 127.0.0.1:<free port>; one stream at a time is current."""

    def __init__(self, *, lease_ttl: float = 30.0, heartbeat_interval: float = 10.0) -> None:
        self.lease_ttl = lease_ttl
        self.heartbeat_interval = heartbeat_interval
        #: Answer heartbeats with an ack renewing everything listed.
        self.auto_ack = True
        #: Welcomes wait for this event (clear it to keep a reconnecting crawler unwelcomed).
        self.welcome_gate = asyncio.Event()
        self.welcome_gate.set()
        #: Attempts the next welcome abandons instead of re-attaching.
        self.abandon_on_welcome: set[Ref] = set()
        #: If set, the next hello is rejected with this reason.
        self.reject_next: str | None = None
        self.received: list[pb.ConnectRequest] = []
        self.streams = 0
        self._outgoing: asyncio.Queue[object] | None = None
        self._changed = asyncio.Condition()
        self._server = grpc.aio.server()
        pb_grpc.add_WorkerServiceServicer_to_server(self, self._server)
        self.address = ""

    async def start(self) -> None:
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(0)

    # -- the servicer -------------------------------------------------------------------------

    async def Connect(
        self, request_iterator: AsyncIterator[pb.ConnectRequest], context: Any
    ) -> AsyncIterator[pb.ConnectResponse]:
        self.streams += 1
        outgoing: asyncio.Queue[object] = asyncio.Queue()
        self._outgoing = outgoing
        reader = asyncio.create_task(self._read(request_iterator, outgoing))
        try:
            while (item := await outgoing.get()) is not _DROP:
                assert isinstance(item, pb.ConnectResponse)
                yield item
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            if self._outgoing is outgoing:
                self._outgoing = None

    async def _read(
        self, requests: AsyncIterator[pb.ConnectRequest], outgoing: asyncio.Queue[object]
    ) -> None:
        async for request in requests:
            await self._record(request)
            which = request.WhichOneof("message")
            if which == "hello":
                await self._answer_hello(request.hello, outgoing)
            elif which == "heartbeat" and self.auto_ack:
                ack = pb.HeartbeatAck(renewed=request.heartbeat.in_flight)
                outgoing.put_nowait(pb.ConnectResponse(heartbeat_ack=ack))
        outgoing.put_nowait(_DROP)

    async def _record(self, request: pb.ConnectRequest) -> None:
        async with self._changed:
            self.received.append(request)
            self._changed.notify_all()

    async def _answer_hello(self, hello: pb.WorkerHello, outgoing: asyncio.Queue[object]) -> None:
        if self.reject_next is not None:
            rejected = pb.ConnectRejected(reason=self.reject_next, supported_protocol_version=1)
            self.reject_next = None
            outgoing.put_nowait(pb.ConnectResponse(rejected=rejected))
            outgoing.put_nowait(_DROP)
            return
        await self.welcome_gate.wait()
        welcome = pb.WorkerWelcome(
            protocol_version=1,
            lease_ttl=_duration(self.lease_ttl),
            heartbeat_interval=_duration(self.heartbeat_interval),
        )
        for ref in hello.in_flight:
            key = (ref.run_id, ref.attempt)
            (welcome.abandoned if key in self.abandon_on_welcome else welcome.reattached).append(
                ref
            )
        outgoing.put_nowait(pb.ConnectResponse(welcome=welcome))

    # -- what a test does ---------------------------------------------------------------------

    def send(self, response: pb.ConnectResponse) -> None:
        """Push `response` on the current stream."""
        assert self._outgoing is not None, "no crawler is connected"
        self._outgoing.put_nowait(response)

    def assign(
        self,
        run_id: str,
        attempt: int = 1,
        spec: JobSpec | None = None,
        completed: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        assignment = pb.Assignment(ref=pb.AttemptRef(run_id=run_id, attempt=attempt))
        job_to_pb(spec or CrawlSpec(("octo/repo",)), assignment)
        for name, output in (completed or {}).items():
            assignment.completed_steps.add(name=name, output=struct_from(output))
        self.send(pb.ConnectResponse(assignment=assignment))

    def cancel(self, run_id: str, attempt: int = 1) -> None:
        ref = pb.AttemptRef(run_id=run_id, attempt=attempt)
        self.send(pb.ConnectResponse(cancel=pb.CancelAttempt(ref=ref, reason="test")))

    def abandon(self, run_id: str, attempt: int = 1) -> None:
        ref = pb.AttemptRef(run_id=run_id, attempt=attempt)
        self.send(pb.ConnectResponse(abandon=pb.AbandonAttempt(ref=ref, reason="test")))

    def drop(self) -> None:
        """End the current stream (as a scheduler restart would)."""
        if self._outgoing is not None:
            self._outgoing.put_nowait(_DROP)
            self._outgoing = None

    async def wait_for(
        self, predicate: Callable[[pb.ConnectRequest], bool], count: int = 1
    ) -> pb.ConnectRequest:
        """Wait until `count` received messages match `predicate`; return the last of them."""

        def matches() -> list[pb.ConnectRequest]:
            return [request for request in self.received if predicate(request)]

        async with asyncio.timeout(WAIT_TIMEOUT), self._changed:
            await self._changed.wait_for(lambda: len(matches()) >= count)
        return matches()[count - 1]

    async def wait_for_result(self, run_id: str, attempt: int = 1) -> pb.AttemptResult:
        request = await self.wait_for(
            lambda r: r.WhichOneof("message") == "result" and ref_of(r) == (run_id, attempt)
        )
        return request.result

    def log_of(self, run_id: str, attempt: int = 1) -> list[str]:
        """The labels of the reports received for one attempt, in order."""
        return [describe(r) for r in self.received if ref_of(r) == (run_id, attempt)]

    def hellos(self) -> list[pb.WorkerHello]:
        return [r.hello for r in self.received if r.WhichOneof("message") == "hello"]
