"""`ghpulse.v1.SchedulerService`: every RPC of the client API, each handed to the run or the
schedule handlers (which validate, convert and call the domain). Exceptions become gRPC status
codes in `common.grpc_errors` (the server's interceptor)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from common.auth.caller import client_key
from common.proto.ghpulse.v1 import scheduler_service_pb2 as pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2_grpc
from scheduler_service.api.runs import RunHandlers
from scheduler_service.api.schedules import ScheduleHandlers

Context = grpc.aio.ServicerContext[Any, Any]


class SchedulerService(scheduler_service_pb2_grpc.SchedulerServiceServicer):
    def __init__(self, runs: RunHandlers, schedules: ScheduleHandlers) -> None:
        self._runs = runs
        self._schedules = schedules

    # -- runs ----------------------------------------------------------------------------------

    async def TriggerRun(
        self, request: pb2.TriggerRunRequest, context: Context
    ) -> pb2.TriggerRunResponse:
        return await self._runs.trigger(request, client_key(context.peer()))

    async def WatchRun(
        self, request: pb2.WatchRunRequest, context: Context
    ) -> AsyncIterator[pb2.WatchRunResponse]:
        # An async generator itself: grpc.aio streams only from async generator methods.
        async for response in self._runs.watch(request, client_key(context.peer())):
            yield response

    async def GetRun(self, request: pb2.GetRunRequest, context: Context) -> pb2.GetRunResponse:
        return await self._runs.get(request)

    async def ListRuns(
        self, request: pb2.ListRunsRequest, context: Context
    ) -> pb2.ListRunsResponse:
        return await self._runs.list_runs(request)

    async def CancelRun(
        self, request: pb2.CancelRunRequest, context: Context
    ) -> pb2.CancelRunResponse:
        return await self._runs.cancel(request)

    async def RetryRun(
        self, request: pb2.RetryRunRequest, context: Context
    ) -> pb2.RetryRunResponse:
        return await self._runs.retry(request)

    async def ListWorkers(
        self, request: pb2.ListWorkersRequest, context: Context
    ) -> pb2.ListWorkersResponse:
        return await self._runs.list_workers(request)

    # -- schedules -----------------------------------------------------------------------------

    async def CreateSchedule(
        self, request: pb2.CreateScheduleRequest, context: Context
    ) -> pb2.CreateScheduleResponse:
        return await self._schedules.create(request)

    async def GetSchedule(
        self, request: pb2.GetScheduleRequest, context: Context
    ) -> pb2.GetScheduleResponse:
        return await self._schedules.get(request)

    async def ListSchedules(
        self, request: pb2.ListSchedulesRequest, context: Context
    ) -> pb2.ListSchedulesResponse:
        return await self._schedules.list_schedules(request)

    async def UpdateSchedule(
        self, request: pb2.UpdateScheduleRequest, context: Context
    ) -> pb2.UpdateScheduleResponse:
        return await self._schedules.update(request)

    async def DeleteSchedule(
        self, request: pb2.DeleteScheduleRequest, context: Context
    ) -> pb2.DeleteScheduleResponse:
        return await self._schedules.delete(request)

    async def PauseSchedule(
        self, request: pb2.PauseScheduleRequest, context: Context
    ) -> pb2.PauseScheduleResponse:
        return await self._schedules.pause(request)

    async def ResumeSchedule(
        self, request: pb2.ResumeScheduleRequest, context: Context
    ) -> pb2.ResumeScheduleResponse:
        return await self._schedules.resume(request)

    async def RunScheduleNow(
        self, request: pb2.RunScheduleNowRequest, context: Context
    ) -> pb2.RunScheduleNowResponse:
        return await self._schedules.run_now(request)
