"""The schedule RPCs of `ghpulse.v1.SchedulerService`, added to the run servicer."""

from __future__ import annotations

import base64
import binascii

from common.errors import FieldViolation, require
from common.proto.ghpulse.v1 import scheduler_service_pb2 as pb2
from common.proto.ghpulse.v1 import schedules_pb2
from scheduler_service.api.run_messages import DISPOSITIONS, run_to_pb
from scheduler_service.api.schedule_messages import (
    firing_to_pb,
    mask_paths,
    require_job,
    schedule_from_pb,
    schedule_to_pb,
)
from scheduler_service.api.service import Context, SchedulerServicer
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.schedules.ops import ScheduleOps, ScheduleView

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
DEFAULT_FIRINGS = 20


def _schedule_id(value: str, field: str = "schedule_id") -> str:
    require([FieldViolation(field, "required")] if not value.strip() else [])
    # PostgreSQL rejects NUL in text: an INTERNAL error otherwise.
    require([FieldViolation(field, "must not contain NUL characters")] if "\x00" in value else [])
    return value.strip()


def _view_pb(view: ScheduleView) -> schedules_pb2.Schedule:
    return schedule_to_pb(view.schedule, view.next_fire_time)


def _page_size(value: int) -> int:
    require([FieldViolation("page_size", "must not be negative")] if value < 0 else [])
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _decode_token(token: str) -> str:
    if not token:
        return ""
    try:
        after = base64.urlsafe_b64decode(token.encode()).decode()
        if "\x00" in after:
            raise ValueError("NUL")
        return after
    except (binascii.Error, UnicodeDecodeError, ValueError):
        require([FieldViolation("page_token", "not a token from ListSchedules")])
        raise AssertionError("unreachable") from None


class ScheduleServicer(SchedulerServicer):
    """SchedulerService: the run RPCs of `SchedulerServicer` plus the schedule RPCs."""

    def __init__(self, orchestrator: Orchestrator, ops: ScheduleOps) -> None:
        super().__init__(orchestrator)
        self._ops = ops

    async def CreateSchedule(
        self, request: pb2.CreateScheduleRequest, context: Context
    ) -> pb2.CreateScheduleResponse:
        require_job(request.schedule)
        schedule = schedule_from_pb(request.schedule, request.schedule_id.strip())
        created = await self._ops.create(schedule)
        return pb2.CreateScheduleResponse(schedule=_view_pb(await self._ops.view(created)))

    async def GetSchedule(
        self, request: pb2.GetScheduleRequest, context: Context
    ) -> pb2.GetScheduleResponse:
        if not 0 <= request.firing_count <= MAX_PAGE_SIZE:
            require([FieldViolation("firing_count", f"between 0 and {MAX_PAGE_SIZE}")])
        view = await self._ops.get(
            _schedule_id(request.schedule_id), request.firing_count or DEFAULT_FIRINGS
        )
        return pb2.GetScheduleResponse(
            schedule=_view_pb(view), recent_firings=[firing_to_pb(f) for f in view.firings]
        )

    async def ListSchedules(
        self, request: pb2.ListSchedulesRequest, context: Context
    ) -> pb2.ListSchedulesResponse:
        size = _page_size(request.page_size)
        views = await self._ops.list_page(_decode_token(request.page_token), size + 1)
        page, more = views[:size], len(views) > size
        token = base64.urlsafe_b64encode(page[-1].schedule.id.encode()).decode() if more else ""
        return pb2.ListSchedulesResponse(
            schedules=[_view_pb(v) for v in page], next_page_token=token
        )

    async def UpdateSchedule(
        self, request: pb2.UpdateScheduleRequest, context: Context
    ) -> pb2.UpdateScheduleResponse:
        schedule_id = _schedule_id(request.schedule.id, "schedule.id")
        fields = mask_paths(list(request.update_mask.paths))
        if fields & {"template", "template.job"}:
            require_job(request.schedule)
        incoming = schedule_from_pb(request.schedule, schedule_id)
        updated = await self._ops.update(schedule_id, incoming, fields)
        return pb2.UpdateScheduleResponse(schedule=_view_pb(await self._ops.view(updated)))

    async def DeleteSchedule(
        self, request: pb2.DeleteScheduleRequest, context: Context
    ) -> pb2.DeleteScheduleResponse:
        await self._ops.delete(_schedule_id(request.schedule_id))
        return pb2.DeleteScheduleResponse()

    async def PauseSchedule(
        self, request: pb2.PauseScheduleRequest, context: Context
    ) -> pb2.PauseScheduleResponse:
        schedule = await self._ops.set_paused(_schedule_id(request.schedule_id), True)
        return pb2.PauseScheduleResponse(schedule=_view_pb(await self._ops.view(schedule)))

    async def ResumeSchedule(
        self, request: pb2.ResumeScheduleRequest, context: Context
    ) -> pb2.ResumeScheduleResponse:
        schedule = await self._ops.set_paused(_schedule_id(request.schedule_id), False)
        return pb2.ResumeScheduleResponse(schedule=_view_pb(await self._ops.view(schedule)))

    async def RunScheduleNow(
        self, request: pb2.RunScheduleNowRequest, context: Context
    ) -> pb2.RunScheduleNowResponse:
        run, disposition = await self._ops.run_now(_schedule_id(request.schedule_id))
        return pb2.RunScheduleNowResponse(run=run_to_pb(run), disposition=DISPOSITIONS[disposition])
