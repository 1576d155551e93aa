"""The schedule RPCs of `ghpulse.v1.SchedulerService`: validate and decode the request, call the
schedule operations, encode the answer."""

from __future__ import annotations

from dataclasses import replace

from common.auth import caller as callers
from common.errors import FieldViolation, PermissionDenied, require
from common.proto.ghpulse.v1 import scheduler_service_pb2 as pb2
from common.proto.ghpulse.v1 import schedules_pb2
from scheduler_service.api.run_messages import DISPOSITIONS, required_id, run_to_pb
from scheduler_service.api.schedule_messages import (
    decode_schedule_page_token,
    encode_schedule_page_token,
    firing_to_pb,
    mask_paths,
    require_job,
    schedule_from_pb,
    schedule_to_pb,
)
from scheduler_service.schedules.errors import ScheduleNotFound
from scheduler_service.schedules.model import Schedule
from scheduler_service.schedules.ops import ScheduleOps, ScheduleView

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
DEFAULT_FIRINGS = 20


def _view_pb(view: ScheduleView) -> schedules_pb2.Schedule:
    return schedule_to_pb(view.schedule, view.next_fire_time)


def _page_size(value: int) -> int:
    require([FieldViolation("page_size", "must not be negative")] if value < 0 else [])
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _in_scope(schedule: Schedule) -> Schedule:
    """`schedule` unless its runs would be outside the caller's label scope (then NOT_FOUND)."""
    if not callers.current().sees(schedule.template.labels):
        raise ScheduleNotFound(schedule.id)
    return schedule


def _scoped_template(schedule: Schedule) -> Schedule:
    """`schedule` with the caller's label scope added to its template's labels."""
    caller = callers.current()
    labels = dict(schedule.template.labels)
    for key, value in caller.labels.items():
        if labels.setdefault(key, value) != value:
            raise PermissionDenied(
                f"token {caller.name!r} may only schedule runs labelled {key}={value}",
                label=key,
                token=caller.name,
            )
    return replace(schedule, template=replace(schedule.template, labels=labels))


class ScheduleHandlers:
    """CreateSchedule, GetSchedule, ListSchedules, UpdateSchedule, DeleteSchedule, PauseSchedule,
    ResumeSchedule and RunScheduleNow."""

    def __init__(self, ops: ScheduleOps) -> None:
        self._ops = ops

    async def _visible(self, schedule_id: str) -> Schedule:
        return _in_scope((await self._ops.get(schedule_id)).schedule)

    async def create(self, request: pb2.CreateScheduleRequest) -> pb2.CreateScheduleResponse:
        require_job(request.schedule)
        schedule = _scoped_template(schedule_from_pb(request.schedule, request.schedule_id.strip()))
        created = await self._ops.create(
            schedule,
            callers.current().name,
            default_jitter=not request.schedule.HasField("jitter"),
        )
        return pb2.CreateScheduleResponse(schedule=_view_pb(await self._ops.view(created)))

    async def get(self, request: pb2.GetScheduleRequest) -> pb2.GetScheduleResponse:
        if not 0 <= request.firing_count <= MAX_PAGE_SIZE:
            require([FieldViolation("firing_count", f"between 0 and {MAX_PAGE_SIZE}")])
        view = await self._ops.get(
            required_id(request.schedule_id, "schedule_id"),
            request.firing_count or DEFAULT_FIRINGS,
        )
        _in_scope(view.schedule)
        return pb2.GetScheduleResponse(
            schedule=_view_pb(view), recent_firings=[firing_to_pb(f) for f in view.firings]
        )

    async def list_schedules(self, request: pb2.ListSchedulesRequest) -> pb2.ListSchedulesResponse:
        size = _page_size(request.page_size)
        after = decode_schedule_page_token(request.page_token)
        views = await self._ops.list_page(after, size + 1)
        page, more = views[:size], len(views) > size
        caller = callers.current()
        return pb2.ListSchedulesResponse(
            schedules=[_view_pb(v) for v in page if caller.sees(v.schedule.template.labels)],
            next_page_token=encode_schedule_page_token(page[-1].schedule) if more else "",
        )

    async def update(self, request: pb2.UpdateScheduleRequest) -> pb2.UpdateScheduleResponse:
        schedule_id = required_id(request.schedule.id, "schedule.id")
        fields = mask_paths(list(request.update_mask.paths))
        if fields & {"template", "template.job"}:
            require_job(request.schedule)
        incoming = _scoped_template(schedule_from_pb(request.schedule, schedule_id))
        await self._visible(schedule_id)
        updated = await self._ops.update(schedule_id, incoming, fields, callers.current().name)
        return pb2.UpdateScheduleResponse(schedule=_view_pb(await self._ops.view(updated)))

    async def delete(self, request: pb2.DeleteScheduleRequest) -> pb2.DeleteScheduleResponse:
        schedule_id = required_id(request.schedule_id, "schedule_id")
        await self._visible(schedule_id)
        await self._ops.delete(schedule_id)
        return pb2.DeleteScheduleResponse()

    async def pause(self, request: pb2.PauseScheduleRequest) -> pb2.PauseScheduleResponse:
        schedule_id = required_id(request.schedule_id, "schedule_id")
        await self._visible(schedule_id)
        schedule = await self._ops.set_paused(schedule_id, True, callers.current().name)
        return pb2.PauseScheduleResponse(schedule=_view_pb(await self._ops.view(schedule)))

    async def resume(self, request: pb2.ResumeScheduleRequest) -> pb2.ResumeScheduleResponse:
        schedule_id = required_id(request.schedule_id, "schedule_id")
        await self._visible(schedule_id)
        schedule = await self._ops.set_paused(schedule_id, False, callers.current().name)
        return pb2.ResumeScheduleResponse(schedule=_view_pb(await self._ops.view(schedule)))

    async def run_now(self, request: pb2.RunScheduleNowRequest) -> pb2.RunScheduleNowResponse:
        schedule_id = required_id(request.schedule_id, "schedule_id")
        await self._visible(schedule_id)
        run, disposition = await self._ops.run_now(schedule_id)
        return pb2.RunScheduleNowResponse(run=run_to_pb(run), disposition=DISPOSITIONS[disposition])
