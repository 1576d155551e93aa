"""Protobuf <-> domain conversion of schedules, validation, and UpdateSchedule's field mask."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from common import pb
from common.errors import FieldViolation, InvalidArgument, require
from common.jobs import CrawlSpec, job_from_pb, job_to_pb, missing_job
from common.proto.ghpulse.v1 import schedules_pb2
from scheduler_service.runs.trigger import to_new_run
from scheduler_service.schedules.firing import trigger_command
from scheduler_service.schedules.model import (
    DEFAULT_CATCH_UP_WINDOW,
    MAX_SCHEDULE_ID,
    SCHEDULE_ID,
    Firing,
    FiringOutcome,
    OverlapPolicy,
    Schedule,
    Template,
)
from scheduler_service.schedules.timing import TimingError, parse_cron, zone

MAX_WINDOW = timedelta(days=7)
OVERLAPS = {
    OverlapPolicy.SKIP: schedules_pb2.OVERLAP_POLICY_SKIP,
    OverlapPolicy.QUEUE: schedules_pb2.OVERLAP_POLICY_QUEUE,
}
OUTCOMES = {
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
#: Changing these restarts the tick sequence: ticks before the change are neither run nor missed.
TIMING_FIELDS = frozenset({"cron", "interval", "start_time", "time_zone"})


def _duration(message: schedules_pb2.Schedule, name: str) -> timedelta | None:
    if not message.HasField(name):  # type: ignore[arg-type]
        return None
    try:
        value: timedelta = getattr(message, name).ToTimedelta()
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


def schedule_from_pb(message: schedules_pb2.Schedule, schedule_id: str = "") -> Schedule:
    """The writable fields of `message` as a schedule (defaults for those unset)."""
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
        outcome=OUTCOMES[firing.outcome],
        run_id=firing.run_id,
        fire_time=pb.timestamp(firing.fire_time),
        scheduler_id=firing.scheduler_id,
        error=firing.error,
    )


# -- validation ---------------------------------------------------------------------------------


def _timing_violations(schedule: Schedule) -> list[FieldViolation]:
    violations = []
    if schedule.interval is not None:
        if schedule.interval < timedelta(seconds=1):
            violations.append(FieldViolation("schedule.interval", "at least 1 second"))
    elif schedule.cron:
        try:
            parse_cron(schedule.cron)
        except TimingError as exc:
            violations.append(FieldViolation("schedule.cron", str(exc)))
    try:
        zone(schedule.time_zone)
    except TimingError as exc:
        violations.append(FieldViolation("schedule.time_zone", str(exc)))
    return violations


def _option_violations(schedule: Schedule) -> list[FieldViolation]:
    violations = []
    if not SCHEDULE_ID.match(schedule.id):
        violations.append(
            FieldViolation(
                "schedule_id",
                f"1-{MAX_SCHEDULE_ID} lowercase letters, digits and '-', not starting or ending "
                "with '-'",
            )
        )
    if not timedelta(0) <= schedule.catch_up_window <= MAX_WINDOW:
        violations.append(FieldViolation("schedule.catch_up_window", "between 0 and 7 days"))
    if not timedelta(0) <= schedule.jitter <= MAX_WINDOW:
        violations.append(FieldViolation("schedule.jitter", "between 0 and 7 days"))
    return violations


def _template_violations(schedule: Schedule, now: datetime) -> list[FieldViolation]:
    try:
        to_new_run(trigger_command(schedule, now), now, 1, timedelta(0))
    except InvalidArgument as exc:
        return [
            FieldViolation(f"schedule.template.{v.field}", v.description) for v in exc.violations
        ]
    return []


def validate_schedule(schedule: Schedule, now: datetime) -> Schedule:
    """`schedule` with its template normalized; raises InvalidArgument with every violation."""
    violations = _timing_violations(schedule) + _option_violations(schedule)
    violations += _template_violations(schedule, now)
    require(violations)
    spec = to_new_run(trigger_command(schedule, now), now, 1, timedelta(0)).spec
    return replace(schedule, template=replace(schedule.template, spec=spec))


def mask_paths(paths: Sequence[str]) -> set[str]:
    """The domain fields named by an update mask (empty: all writable fields)."""
    unknown = [path for path in paths if path not in MASK_PATHS]
    require([FieldViolation("update_mask", f"unknown path {path!r}") for path in unknown])
    chosen = paths or list(MASK_PATHS)
    return {name for path in chosen for name in MASK_PATHS[path]}


def apply_mask(current: Schedule, incoming: Schedule, fields: set[str]) -> Schedule:
    """`current` with the masked `fields` taken from `incoming`."""
    template = current.template
    if "template" in fields:
        template = incoming.template
    if "template.job" in fields:
        template = replace(template, spec=incoming.template.spec)
    if "template.labels" in fields:
        template = replace(template, labels=incoming.template.labels)
    if "template.max_attempts" in fields:
        template = replace(template, max_attempts=incoming.template.max_attempts)
    plain = fields - {"template", "template.job", "template.labels", "template.max_attempts"}
    changed = replace(current, template=template, **{f: getattr(incoming, f) for f in plain})
    if changed.interval is not None and changed.start_time is None:
        changed = replace(changed, start_time=current.created_at)
    return changed
