"""The schedule exceptions (mapped to gRPC status in `common.grpc_errors` by their kinds)."""

from __future__ import annotations

from common.errors import AlreadyExists, NotFound, quote
from scheduler_service.errors import SchedulerError


class ScheduleNotFound(SchedulerError, NotFound):
    """No schedule with this id."""

    reason = "SCHEDULE_NOT_FOUND"

    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"schedule {quote(schedule_id)} not found", schedule_id=schedule_id)


class ScheduleExists(SchedulerError, AlreadyExists):
    """A schedule with this id already exists."""

    reason = "SCHEDULE_EXISTS"

    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"schedule {quote(schedule_id)} already exists", schedule_id=schedule_id)
