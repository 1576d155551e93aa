"""`ghpulse.v1.SchedulerService`: thin servicer methods over the orchestrator.

Exceptions become gRPC status codes in `common.grpc_errors` (the server's interceptor).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import grpc

from common import pb
from common.errors import FieldViolation, require
from common.proto.ghpulse.v1 import scheduler_service_pb2 as pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2_grpc
from scheduler_service.api.run_messages import (
    DISPOSITIONS,
    encode_page_token,
    event_to_pb,
    query_from_pb,
    run_to_pb,
    trigger_from_pb,
)
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.runs.model import Run, RunEvent

Context = grpc.aio.ServicerContext[Any, Any]
#: Recent events' messages kept for watchers (a few seconds of a busy scheduler).
EVENT_CACHE_SIZE = 4096


def _run_id(value: str, field: str = "run_id") -> str:
    require([FieldViolation(field, "required")] if not value.strip() else [])
    # PostgreSQL rejects NUL in text: an INTERNAL error otherwise.
    require([FieldViolation(field, "must not contain NUL characters")] if "\x00" in value else [])
    return value.strip()


class SchedulerServicer(scheduler_service_pb2_grpc.SchedulerServiceServicer):
    def __init__(self, orchestrator: Orchestrator) -> None:
        self._orchestrator = orchestrator
        self._events: OrderedDict[tuple[str, int], pb2.WatchRunResponse] = OrderedDict()

    async def TriggerRun(
        self, request: pb2.TriggerRunRequest, context: Context
    ) -> pb2.TriggerRunResponse:
        run, disposition = await self._orchestrator.trigger(trigger_from_pb(request))
        return pb2.TriggerRunResponse(run=run_to_pb(run), disposition=DISPOSITIONS[disposition])

    async def WatchRun(
        self, request: pb2.WatchRunRequest, context: Context
    ) -> AsyncIterator[pb2.WatchRunResponse]:
        run_id = _run_id(request.run_id)
        if request.after_seq < 0:
            require([FieldViolation("after_seq", "must not be negative")])
        async for item in self._orchestrator.watch(run_id, request.after_seq):
            if isinstance(item, Run):
                yield pb2.WatchRunResponse(snapshot=run_to_pb(item))
            else:
                yield self._event_message(item)

    def _event_message(self, event: RunEvent) -> pb2.WatchRunResponse:
        """One message per event, shared by all its watchers (not converted once per watcher)."""
        key = (event.run_id, event.seq)
        message = self._events.get(key)
        if message is None:
            message = pb2.WatchRunResponse(event=event_to_pb(event))
            self._events[key] = message
            if len(self._events) > EVENT_CACHE_SIZE:
                self._events.popitem(last=False)
        return message

    async def GetRun(self, request: pb2.GetRunRequest, context: Context) -> pb2.GetRunResponse:
        run = await self._orchestrator.get(_run_id(request.run_id))
        return pb2.GetRunResponse(run=run_to_pb(run))

    async def ListRuns(
        self, request: pb2.ListRunsRequest, context: Context
    ) -> pb2.ListRunsResponse:
        query = query_from_pb(request)
        runs = await self._orchestrator.list_runs(query)
        page, more = runs[: query.page_size], len(runs) > query.page_size
        return pb2.ListRunsResponse(
            runs=[run_to_pb(r) for r in page],
            next_page_token=encode_page_token(page[-1]) if more else "",
        )

    async def CancelRun(
        self, request: pb2.CancelRunRequest, context: Context
    ) -> pb2.CancelRunResponse:
        run = await self._orchestrator.cancel(_run_id(request.run_id), request.reason)
        return pb2.CancelRunResponse(run=run_to_pb(run))

    async def RetryRun(
        self, request: pb2.RetryRunRequest, context: Context
    ) -> pb2.RetryRunResponse:
        run = await self._orchestrator.retry(_run_id(request.run_id))
        return pb2.RetryRunResponse(run=run_to_pb(run))

    async def ListWorkers(
        self, request: pb2.ListWorkersRequest, context: Context
    ) -> pb2.ListWorkersResponse:
        workers = [
            pb2.Worker(
                id=conn.id,
                slots=conn.slots,
                free_slots=conn.free_slots,
                run_ids=sorted(conn.running),
                connected_at=pb.timestamp(conn.connected_at),
                last_heartbeat_at=pb.timestamp(conn.last_heartbeat_at),
                draining=conn.draining,
                version=conn.version,
            )
            for conn in sorted(self._orchestrator.dispatcher.workers, key=lambda c: c.id)
        ]
        return pb2.ListWorkersResponse(workers=workers)
