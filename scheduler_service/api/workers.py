"""`ghpulse.v1.WorkerService`: the stream each crawler holds. Thin: decode, delegate, encode.

Rejections and stale reports are answered with messages on the stream, never with an error ending
it: a crawler that sends something wrong is told so and keeps its connection. Reports are
pipelined (see `orchestration.pipeline`): the stream keeps reading while they are written.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from common.auth import caller as callers
from common.proto.ghpulse.v1 import worker_service_pb2, worker_service_pb2_grpc
from scheduler_service.api.identity import hello_problem, incompatible_protocol, worker_identity
from scheduler_service.api.worker_messages import (
    UNVERSIONED_PROTOCOL,
    outgoing_to_pb,
    ref_from_pb,
    rejected,
    report_from_pb,
    result_from_pb,
)
from scheduler_service.cluster.presence import Presence
from scheduler_service.orchestration.dispatch import WorkerConn
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.orchestration.pipeline import Pipeline

log = structlog.get_logger(__name__)
READER_DRAIN = 2.0
ConnectRequests = AsyncIterator[worker_service_pb2.ConnectRequest]


class WorkerServicer(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(
        self, orchestrator: Orchestrator, max_slots: int = 64, presence: Presence | None = None
    ) -> None:
        self._orchestrator = orchestrator
        self._presence = presence
        #: One per stream until its clean-up has ended (see `closed`).
        self._streams: set[asyncio.Future[None]] = set()
        self._max_slots = max_slots
        tunables = orchestrator.tunables
        self._lease_ttl = tunables.lease_ttl.total_seconds()
        self._heartbeat = tunables.heartbeat_interval.total_seconds()

    async def Connect(
        self, request_iterator: ConnectRequests, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[worker_service_pb2.ConnectResponse]:
        first = await anext(aiter(request_iterator), None)
        problem = hello_problem(first)
        if problem is not None:
            yield rejected(problem)
            return
        assert first is not None
        hello = first.hello
        if (incompatible := incompatible_protocol(hello)) is not None:
            # The message tells crawlers of any version why; the status ends the stream with it.
            yield rejected(str(incompatible))
            raise incompatible
        now = self._orchestrator.clock.now()
        # Who the crawler is comes from its credential; it names only itself among its replicas.
        worker_id = worker_identity(callers.current(), hello.worker_id)
        slots = min(hello.slots, self._max_slots)
        conn = WorkerConn(worker_id, slots, hello.version, now, now)
        conn.protocol_version = hello.protocol_version or UNVERSIONED_PROTOCOL
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._streams.add(ended)
        reader = asyncio.create_task(self._read(conn, request_iterator))
        try:
            if self._presence is not None:
                # Before the welcome: once welcomed, the crawler is in every replica's ListWorkers.
                await self._presence.connected(conn)
            await self._orchestrator.worker_connected(
                conn, [ref_from_pb(r) for r in hello.in_flight]
            )
            while (item := await conn.outbox.get()) is not None:
                yield outgoing_to_pb(item, self._lease_ttl, self._heartbeat)
        finally:
            # In a task of its own, which a second cancellation of this handler leaves running.
            ending = asyncio.create_task(self._end(conn, reader))
            ending.add_done_callback(lambda _: self._ended(ended))
            await asyncio.shield(ending)

    async def closed(self) -> None:
        """Return once every stream has been cleaned up. The server's `stop` cancels the handlers
        without waiting for their clean-up, whose database calls must end before the store closes
        (a connection returned to a disposed pool is never closed)."""
        while self._streams:
            await asyncio.wait(set(self._streams))

    def _ended(self, ended: asyncio.Future[None]) -> None:
        self._streams.discard(ended)
        if not ended.done():
            ended.set_result(None)

    async def _end(self, conn: WorkerConn, reader: asyncio.Task[None]) -> None:
        # Let a report being written finish (its transaction and connection end cleanly); the
        # reader stops by itself once the stream is gone.
        await asyncio.wait([reader], timeout=READER_DRAIN)
        reader.cancel()
        await self._orchestrator.worker_disconnected(conn)
        if self._presence is not None:
            await self._presence.disconnected(conn)

    async def _read(self, conn: WorkerConn, requests: ConnectRequests) -> None:
        pipeline = Pipeline(conn.id)
        try:
            async for request in requests:
                which = request.WhichOneof("message")
                if which == "drain":
                    # After the reports sent before it, as when they were written one by one.
                    await pipeline.drain()
                    self._orchestrator.drain(conn)
                    continue
                await pipeline.submit(
                    _order_key(request), functools.partial(self._handle, conn, request)
                )
            await pipeline.drain()
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        finally:
            conn.close()

    async def _handle(self, conn: WorkerConn, request: worker_service_pb2.ConnectRequest) -> None:
        which = request.WhichOneof("message")
        orchestrator = self._orchestrator
        if which == "heartbeat":
            refs = [ref_from_pb(r) for r in request.heartbeat.in_flight]
            await orchestrator.heartbeat(conn, refs)
        elif which == "step_report":
            report = report_from_pb(request.step_report)
            if report is not None:
                await orchestrator.step_report(conn, ref_from_pb(request.step_report.ref), report)
        elif which == "result":
            result = result_from_pb(request.result)
            await orchestrator.attempt_result(conn, ref_from_pb(request.result.ref), result)
        else:
            log.warning("worker.unexpected_message", worker=conn.id, message=which)


def _order_key(request: worker_service_pb2.ConnectRequest) -> str:
    """Reports about one run are written in the order sent; heartbeats in theirs."""
    which = request.WhichOneof("message")
    if which == "step_report":
        return f"run:{request.step_report.ref.run_id}"
    if which == "result":
        return f"run:{request.result.ref.run_id}"
    return which or ""
