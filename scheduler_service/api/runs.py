"""The run RPCs of `ghpulse.v1.SchedulerService`: validate and decode the request, ask the
orchestrator, encode the answer. Exceptions become gRPC status codes in `common.grpc_errors` (the
server's interceptor)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator

from common.auth import caller as callers
from common.errors import FieldViolation, require
from common.proto.ghpulse.v1 import scheduler_service_pb2 as pb2
from scheduler_service.api.access import scoped_query, trigger_as, visible
from scheduler_service.api.limits import TriggerRate, WatchLimits
from scheduler_service.api.run_messages import (
    DISPOSITIONS,
    encode_page_token,
    event_to_pb,
    query_from_pb,
    reason_from_pb,
    required_id,
    run_to_pb,
    trigger_from_pb,
)
from scheduler_service.api.worker_messages import worker_to_pb
from scheduler_service.cluster.presence import Presence
from scheduler_service.errors import RunConflict
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.runs.model import Run, RunEvent

#: Recent events' messages kept for watchers (a few seconds of a busy scheduler).
EVENT_CACHE_SIZE = 4096


class RunHandlers:
    """TriggerRun, WatchRun, GetRun, ListRuns, CancelRun, RetryRun and ListWorkers."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        rate: TriggerRate | None = None,
        watchers: WatchLimits | None = None,
        presence: Presence | None = None,
    ) -> None:
        self._orchestrator = orchestrator
        self._presence = presence
        self._rate = rate or TriggerRate(0, 1, lambda: 0.0)
        self._watchers = watchers or WatchLimits(2000, 2000)
        self._events: OrderedDict[tuple[str, int], pb2.WatchRunResponse] = OrderedDict()

    async def trigger(self, request: pb2.TriggerRunRequest, client: str) -> pb2.TriggerRunResponse:
        self._rate.take(client)
        caller = callers.current()
        command = trigger_as(trigger_from_pb(request), caller)
        try:
            run, disposition = await self._orchestrator.trigger(command)
        except RunConflict as conflict:
            # REJECT names the key's active run: only if the caller may see it.
            await self._visible(conflict.active_run_id)
            raise
        # A key's active run may belong to someone else's label scope: joining it would show it.
        visible(run, caller)
        return pb2.TriggerRunResponse(run=run_to_pb(run), disposition=DISPOSITIONS[disposition])

    async def watch(
        self, request: pb2.WatchRunRequest, client: str
    ) -> AsyncIterator[pb2.WatchRunResponse]:
        run_id = required_id(request.run_id, "run_id")
        if request.after_seq < 0:
            require([FieldViolation("after_seq", "must not be negative")])
        caller = callers.current()
        with self._watchers.open(run_id, client):
            async for item in self._orchestrator.watch(run_id, request.after_seq):
                if isinstance(item, Run):
                    yield pb2.WatchRunResponse(snapshot=run_to_pb(visible(item, caller)))
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

    async def _visible(self, run_id: str) -> Run:
        return visible(await self._orchestrator.get(run_id), callers.current())

    async def get(self, request: pb2.GetRunRequest) -> pb2.GetRunResponse:
        run = await self._visible(required_id(request.run_id, "run_id"))
        return pb2.GetRunResponse(run=run_to_pb(run))

    async def list_runs(self, request: pb2.ListRunsRequest) -> pb2.ListRunsResponse:
        query = scoped_query(query_from_pb(request), callers.current())
        if query is None:
            return pb2.ListRunsResponse()
        runs = await self._orchestrator.list_runs(query)
        page, more = runs[: query.page_size], len(runs) > query.page_size
        return pb2.ListRunsResponse(
            runs=[run_to_pb(r) for r in page],
            next_page_token=encode_page_token(page[-1]) if more else "",
        )

    async def cancel(self, request: pb2.CancelRunRequest) -> pb2.CancelRunResponse:
        run_id = required_id(request.run_id, "run_id")
        reason = reason_from_pb(request.reason)
        await self._visible(run_id)
        run = await self._orchestrator.cancel(run_id, reason, callers.current().name)
        return pb2.CancelRunResponse(run=run_to_pb(run))

    async def retry(self, request: pb2.RetryRunRequest) -> pb2.RetryRunResponse:
        run_id = required_id(request.run_id, "run_id")
        await self._visible(run_id)
        run = await self._orchestrator.retry(run_id, callers.current().name)
        return pb2.RetryRunResponse(run=run_to_pb(run))

    async def list_workers(self, request: pb2.ListWorkersRequest) -> pb2.ListWorkersResponse:
        """Every crawler of the cluster, with the replica it is connected to."""
        if self._presence is None:
            return pb2.ListWorkersResponse()
        entries = await self._presence.live()
        return pb2.ListWorkersResponse(workers=[worker_to_pb(entry) for entry in entries])
