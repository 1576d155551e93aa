"""What is due of one schedule at a given time: the plan a claim records, where the schedule is
settled up to afterwards, when it is next due, and the default jitter of new schedules. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler_service.schedules.model import Schedule
from scheduler_service.schedules.timing import DuePlan, Timing, next_run_time, plan_due

#: A schedule created without `jitter` is delayed by up to its period, at most this much.
DEFAULT_JITTER_MAX = timedelta(hours=1)


@dataclass(frozen=True)
class Settlement:
    """`plan`: the ticks to record now; `last_nominal`: the newest tick settled once it is
    recorded; `next_due`: when the tick after it is due to run (None: paused or never)."""

    plan: DuePlan
    last_nominal: datetime | None
    next_due: datetime | None


@dataclass(frozen=True)
class Claimed:
    """A schedule as it was when claimed, and what the claim recorded of it."""

    schedule: Schedule
    settlement: Settlement


def settled_until(schedule: Schedule) -> datetime:
    """Ticks up to this time are settled (or, before `fire_after`, never to be fired)."""
    assert schedule.fire_after is not None
    last = schedule.last_nominal
    return max(schedule.fire_after, last) if last else schedule.fire_after


def next_due(schedule: Schedule) -> datetime | None:
    """When the schedule's first unsettled tick is due to run (its nominal time plus jitter)."""
    if schedule.paused:
        return None
    return next_run_time(schedule.timing, settled_until(schedule), schedule.id, schedule.jitter)


def settle(schedule: Schedule, now: datetime) -> Settlement:
    """The ticks of `schedule` to settle at `now` (see `plan_due`), and the state after them."""
    if schedule.paused:
        return Settlement(DuePlan(None, ()), schedule.last_nominal, None)
    after = settled_until(schedule)
    plan = plan_due(
        schedule.timing,
        after=after,
        now=now,
        window=schedule.catch_up_window,
        schedule_id=schedule.id,
        jitter=schedule.jitter,
    )
    last = plan.latest or schedule.last_nominal
    upto = max(after, plan.latest or after)
    return Settlement(
        plan, last, next_run_time(schedule.timing, upto, schedule.id, schedule.jitter)
    )


def default_jitter(timing: Timing, after: datetime) -> timedelta:
    """The jitter of a schedule created at `after` without one: its period (the gap between its
    first two ticks), at most `DEFAULT_JITTER_MAX`. The delay of each tick is then a hash of the
    schedule id and the tick (`jitter_delay`): a fleet of hourly schedules spreads over the hour,
    the same way on every replica and every restart."""
    first = timing.next_after(after)
    second = timing.next_after(first) if first is not None else None
    if first is None or second is None:
        return timedelta(0)
    return min(second - first, DEFAULT_JITTER_MAX)
