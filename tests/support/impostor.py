"""A process pretending to be a crawler: it speaks WorkerService by hand, with whatever
credentials and hello the test gives it, and records what the scheduler sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc

from common.proto.ghpulse.v1 import worker_service_pb2 as wpb
from common.proto.ghpulse.v1.worker_service_pb2_grpc import WorkerServiceStub

#: A bound for a test that would otherwise hang; never reached when the scheduler answers.
READ_TIMEOUT = 20.0

#: The end-of-stream marker of grpc.aio (missing from grpc-stubs).
EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]


class Impostor:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._outgoing: asyncio.Queue[wpb.ConnectRequest | None] = asyncio.Queue()
        self.call = WorkerServiceStub(channel).Connect(self._requests())
        self.assignments: list[wpb.Assignment] = []

    async def _requests(self) -> AsyncIterator[wpb.ConnectRequest]:
        while (item := await self._outgoing.get()) is not None:
            yield item

    def send(self, request: wpb.ConnectRequest) -> None:
        self._outgoing.put_nowait(request)

    def hello(
        self, worker_id: str, slots: int = 1, in_flight: list[wpb.AttemptRef] | None = None
    ) -> None:
        hello = wpb.WorkerHello(
            worker_id=worker_id, protocol_version=1, slots=slots, in_flight=in_flight or []
        )
        self.send(wpb.ConnectRequest(hello=hello))

    async def receive(self, kind: str) -> wpb.ConnectResponse:
        """The next message of `kind` (assignments seen on the way are recorded)."""
        while True:
            message: Any = await asyncio.wait_for(self.call.read(), READ_TIMEOUT)
            assert message is not EOF, "the scheduler ended the stream"
            which = message.WhichOneof("message")
            if which == "assignment":
                self.assignments.append(message.assignment)
            if which == kind:
                return cast(wpb.ConnectResponse, message)

    async def collect(self) -> None:
        """Keep reading (recording assignments) until the stream ends."""
        try:
            while (message := cast(Any, await self.call.read())) is not EOF:
                if message.WhichOneof("message") == "assignment":
                    self.assignments.append(message.assignment)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass

    def close(self) -> None:
        self._outgoing.put_nowait(None)
        self.call.cancel()
