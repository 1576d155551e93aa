"""Protobuf <-> domain conversion of schedules, UpdateSchedule's field mask and ListSchedules' page
tokens."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime, timedelta

from common import pb
from common.errors import FieldViolation, quote, require
from common.jobs import CrawlSpec, job_from_pb, job_to_pb, missing_job
from common.pb import strict_b64decode
from common.proto.ghpulse.v1 import schedules_pb2
from scheduler_service.schedules.model import (
    DEFAULT_CATCH_UP_WINDOW,
    Firing,
    FiringOutcome,
    OverlapPolicy,
    Schedule,
    Template,
)

OVERLAPS = {
    OverlapPolicy.SKIP: schedules_pb2.OVERLAP_POLICY_SKIP,
    OverlapPolicy.QUEUE: schedules_pb2.OVERLAP_POLICY_QUEUE,
}
FIRING_OUTCOMES = {
    FiringOutcome.PENDING: schedules_pb2.FIRING_OUTCOME_UNSPECIFIED,
    FiringOutcome.STARTED: schedules_pb2.FIRING_OUTCOME_STARTED,
    FiringOutcome.QUEUED: schedules_pb2.FIRING_OUTCOME_QUEUED,
    FiringOutcome.SKIPPED: schedules_pb2.FIRING_OUTCOME_SKIPPED,
    FiringOutcome.MISSED: schedules_pb2.FIRING_OUTCOME_MISSED,
}
#: UpdateSchedule mask paths -> the domain fields they replace.
MASK_PATHS: dict[str, tuple[str, ...]] = {
    "cron": ("cron", "interval"),
    "interval": ("cron", "interval"),
    "start_time": ("start_time",),
    "time_zone": ("time_zone",),
    "template": ("template",),
    "template.job": ("template.job",),
    "template.labels": ("template.labels",),
    "template.max_attempts": ("template.max_attempts",),
    "overlap": ("overlap",),
    "catch_up_window": ("catch_up_window",),
    "jitter": ("jitter",),
    "paused": ("paused",),
}


def _duration(message: schedules_pb2.Schedule, name: str) -> timedelta | None:
    if not message.HasField(name):  # type: ignore[arg-type]
        return None
    try:
        value = pb.from_duration(getattr(message, name))
    except (ValueError, OverflowError):
        require([FieldViolation(f"schedule.{name}", "not a valid duration")])
        raise AssertionError("unreachable") from None
    return value


def _start_time(message: schedules_pb2.Schedule) -> datetime | None:
    try:
        return pb.from_timestamp(message.start_time, message.HasField("start_time"))
    except (ValueError, OverflowError):
        require([FieldViolation("schedule.start_time", "not a valid timestamp")])
        raise AssertionError("unreachable") from None


def require_job(message: schedules_pb2.Schedule) -> None:
    """A schedule's template must name its job (create, or update of `template`/`template.job`)."""
    if message.template.WhichOneof("job") is None:
        require([missing_job("schedule.template.job")])


def template_from_pb(message: schedules_pb2.ScheduleTemplate) -> Template:
    spec = job_from_pb(message) or CrawlSpec()
    return Template(spec, dict(message.labels), message.max_attempts)


#: Longest cron expression and time zone name accepted (their columns' sizes).
MAX_CRON = 200
MAX_TIME_ZONE = 64


def _bounded_violations(message: schedules_pb2.Schedule) -> list[FieldViolation]:
    violations = []
    if message.overlap not in OVERLAPS.values() and message.overlap != 0:
        violations.append(FieldViolation("schedule.overlap", f"unknown policy {message.overlap}"))
    if len(message.cron) > MAX_CRON:
        violations.append(FieldViolation("schedule.cron", f"at most {MAX_CRON} characters"))
    if len(message.time_zone) > MAX_TIME_ZONE or "\x00" in message.time_zone:
        violations.append(FieldViolation("schedule.time_zone", "not an IANA time zone name"))
    return violations


def schedule_from_pb(message: schedules_pb2.Schedule, schedule_id: str = "") -> Schedule:
    """The writable fields of `message` as a schedule (defaults for those unset)."""
    require(_bounded_violations(message))
    window = _duration(message, "catch_up_window")
    return Schedule(
        id=schedule_id or message.id,
        template=template_from_pb(message.template),
        cron=message.cron,
        interval=_duration(message, "interval"),
        start_time=_start_time(message),
        time_zone=message.time_zone or "UTC",
        overlap=(
            OverlapPolicy.QUEUE
            if message.overlap == schedules_pb2.OVERLAP_POLICY_QUEUE
            else OverlapPolicy.SKIP
        ),
        catch_up_window=DEFAULT_CATCH_UP_WINDOW if window is None else window,
        jitter=_duration(message, "jitter") or timedelta(0),
        paused=message.paused,
    )


def schedule_to_pb(
    schedule: Schedule, next_fire_time: datetime | None = None
) -> schedules_pb2.Schedule:
    message = schedules_pb2.Schedule(
        id=schedule.id,
        time_zone=schedule.time_zone,
        overlap=OVERLAPS[schedule.overlap],
        catch_up_window=pb.duration(schedule.catch_up_window),
        jitter=pb.duration(schedule.jitter),
        paused=schedule.paused,
        next_fire_time=pb.timestamp(next_fire_time),
        last_fire_time=pb.timestamp(schedule.last_fire_time),
        last_run_id=schedule.last_run_id,
        skipped_count=schedule.skipped_count,
        missed_count=schedule.missed_count,
        create_time=pb.timestamp(schedule.created_at),
        update_time=pb.timestamp(schedule.updated_at),
        start_time=pb.timestamp(schedule.start_time),
        created_by=schedule.created_by,
        updated_by=schedule.updated_by,
    )
    if schedule.interval is not None:
        message.interval.FromTimedelta(schedule.interval)
    else:
        message.cron = schedule.cron or "30 * * * *"
    template = schedule.template
    job_to_pb(template.spec, message.template)
    message.template.labels.update(template.labels)
    message.template.max_attempts = template.max_attempts
    return message


def firing_to_pb(firing: Firing) -> schedules_pb2.ScheduleFiring:
    return schedules_pb2.ScheduleFiring(
        schedule_id=firing.schedule_id,
        nominal_time=pb.timestamp(firing.nominal_time),
        outcome=FIRING_OUTCOMES[firing.outcome],
        run_id=firing.run_id,
        fire_time=pb.timestamp(firing.fire_time),
        scheduler_id=firing.scheduler_id,
        error=firing.error,
    )


def mask_paths(paths: Sequence[str]) -> set[str]:
    """The domain fields named by an update mask (empty: all writable fields)."""
    if len(paths) > len(MASK_PATHS):
        require([FieldViolation("update_mask", f"at most {len(MASK_PATHS)} paths")])
    unknown = [path for path in paths if path not in MASK_PATHS]
    require([FieldViolation("update_mask", f"unknown path {quote(path)}") for path in unknown])
    chosen = paths or list(MASK_PATHS)
    return {name for path in chosen for name in MASK_PATHS[path]}


def encode_schedule_page_token(last: Schedule) -> str:
    """The ListSchedules page token that continues after `last`."""
    return base64.urlsafe_b64encode(last.id.encode()).decode()


def decode_schedule_page_token(token: str) -> str:
    """The schedule id a ListSchedules page token continues after ("" for the first page)."""
    if not token:
        return ""
    try:
        after = strict_b64decode(token).decode()
        if "\x00" in after or len(token) > 512:
            raise ValueError("NUL")
        return after
    except (binascii.Error, UnicodeDecodeError, ValueError):
        require([FieldViolation("page_token", "not a token from ListSchedules")])
        raise AssertionError("unreachable") from None
