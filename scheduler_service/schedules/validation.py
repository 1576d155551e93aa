"""Validating a schedule before it is stored: timing, options and its template (as the TriggerRun
request each tick issues). Every violation is reported at once, with protobuf field paths."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from common.errors import FieldViolation, InvalidArgument, require
from scheduler_service.runs.trigger import to_new_run
from scheduler_service.schedules.firing import trigger_command
from scheduler_service.schedules.model import MAX_SCHEDULE_ID, SCHEDULE_ID, Schedule
from scheduler_service.schedules.timing import TimingError, parse_cron, zone

MAX_WINDOW = timedelta(days=7)
MAX_INTERVAL = timedelta(days=366)


def _timing_violations(schedule: Schedule) -> list[FieldViolation]:
    violations = []
    if schedule.interval is not None:
        if not timedelta(seconds=1) <= schedule.interval <= MAX_INTERVAL:
            violations.append(FieldViolation("schedule.interval", "between 1 second and 366 days"))
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
