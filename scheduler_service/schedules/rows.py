"""Schedule and firing rows <-> domain types, and the multi-row writes of a claim and of recorded
outcomes (a few executemany statements per batch, not a few per schedule)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import String, Table, bindparam, case, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from common.clock import utc
from common.db import UTCDateTime
from common.jobs import from_json, to_json
from scheduler_service.db.models import ScheduleFiringRow, ScheduleRow
from scheduler_service.schedules.due import Claimed
from scheduler_service.schedules.model import (
    Firing,
    FiringOutcome,
    OverlapPolicy,
    Schedule,
    Template,
)

schedules = cast(Table, ScheduleRow.__table__)
firings = cast(Table, ScheduleFiringRow.__table__)
_FIRED = (FiringOutcome.STARTED, FiringOutcome.QUEUED, FiringOutcome.SKIPPED)


def counters(outcome: FiringOutcome, with_run: bool) -> dict[str, Any]:
    """The schedule columns a recorded `outcome` changes, for an executemany with the parameters
    `b_id` (the schedule), `b_tick` (the nominal time) and, `with_run`, `b_run` (its run)."""
    values: dict[str, Any] = {}
    if outcome is FiringOutcome.SKIPPED:
        values["skipped_count"] = schedules.c.skipped_count + 1
    if outcome is FiringOutcome.MISSED:
        values["missed_count"] = schedules.c.missed_count + 1
    # Outcomes of two ticks may be recorded out of order (a recovered firing): newest wins.
    tick = bindparam("b_tick", type_=UTCDateTime())
    newest = or_(schedules.c.last_fire_time.is_(None), schedules.c.last_fire_time <= tick)
    if outcome in _FIRED:
        values["last_fire_time"] = case((newest, tick), else_=schedules.c.last_fire_time)
    if with_run:
        values["last_run_id"] = case(
            (newest, bindparam("b_run", type_=String())), else_=schedules.c.last_run_id
        )
    return values


def firing_row(
    schedule_id: str, nominal: datetime, outcome: FiringOutcome, scheduler_id: str, now: datetime
) -> dict[str, Any]:
    return {
        "schedule_id": schedule_id,
        "nominal_time": nominal,
        "outcome": outcome.value,
        "claimed_at": now,
        "scheduler_id": scheduler_id,
        "fire_time": now if outcome is FiringOutcome.MISSED else None,
    }


def _total_seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def to_row(schedule: Schedule) -> dict[str, Any]:
    template = schedule.template
    return {
        "id": schedule.id,
        "cron": schedule.cron,
        "interval_seconds": _total_seconds(schedule.interval),
        "start_time": schedule.start_time,
        "time_zone": schedule.time_zone,
        "job_kind": template.spec.job_kind.value,
        "job": to_json(template.spec),
        "labels": dict(template.labels),
        "max_attempts": template.max_attempts,
        "overlap": schedule.overlap.value,
        "catch_up_window_seconds": schedule.catch_up_window.total_seconds(),
        "jitter_seconds": schedule.jitter.total_seconds(),
        "paused": schedule.paused,
        "fire_after": schedule.fire_after,
        "last_fire_time": schedule.last_fire_time,
        "last_run_id": schedule.last_run_id,
        "skipped_count": schedule.skipped_count,
        "missed_count": schedule.missed_count,
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
        "version": schedule.version,
        "created_by": schedule.created_by,
        "updated_by": schedule.updated_by,
        "last_nominal": schedule.last_nominal,
        "next_due_at": schedule.next_due,
    }


def from_row(row: dict[str, Any]) -> Schedule:
    interval = row["interval_seconds"]
    return Schedule(
        id=row["id"],
        template=Template(
            from_json(row["job_kind"], row["job"]), dict(row["labels"] or {}), row["max_attempts"]
        ),
        cron=row["cron"],
        interval=None if interval is None else timedelta(seconds=interval),
        start_time=row["start_time"],
        time_zone=row["time_zone"],
        overlap=OverlapPolicy(row["overlap"]),
        catch_up_window=timedelta(seconds=row["catch_up_window_seconds"]),
        jitter=timedelta(seconds=row["jitter_seconds"]),
        paused=bool(row["paused"]),
        fire_after=row["fire_after"],
        last_fire_time=row["last_fire_time"],
        last_run_id=row["last_run_id"],
        skipped_count=row["skipped_count"],
        missed_count=row["missed_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        created_by=row["created_by"],
        updated_by=row["updated_by"],
        last_nominal=row["last_nominal"],
        next_due=row["next_due_at"],
    )


def to_firing(row: dict[str, Any]) -> Firing:
    return Firing(
        schedule_id=row["schedule_id"],
        nominal_time=row["nominal_time"],
        outcome=FiringOutcome(row["outcome"]),
        run_id=row["run_id"],
        fire_time=row["fire_time"],
        scheduler_id=row["scheduler_id"],
        error=row["error"],
    )


# -- the multi-row writes of claims and records -------------------------------------------------


async def write_claims(
    conn: AsyncConnection, claimed: Sequence[Claimed], scheduler_id: str, now: datetime
) -> None:
    """The firings and schedule columns of `claimed`, in two statements (executemany)."""
    rows = []
    for item in claimed:
        plan, schedule_id = item.settlement.plan, item.schedule.id
        rows += [
            firing_row(schedule_id, t, FiringOutcome.MISSED, scheduler_id, now) for t in plan.missed
        ]
        if plan.fire is not None:
            rows.append(
                firing_row(schedule_id, plan.fire, FiringOutcome.PENDING, scheduler_id, now)
            )
    if rows:
        await conn.execute(firings.insert(), rows)
    if not claimed:
        return
    await conn.execute(
        update(schedules)
        .where(schedules.c.id == bindparam("b_id"))
        .values(
            next_due_at=bindparam("b_next", type_=UTCDateTime()),
            last_nominal=bindparam("b_last", type_=UTCDateTime()),
            missed_count=schedules.c.missed_count + bindparam("b_missed"),
        ),
        [
            {
                "b_id": item.schedule.id,
                "b_next": item.settlement.next_due,
                "b_last": item.settlement.last_nominal,
                "b_missed": len(item.settlement.plan.missed) + item.settlement.plan.uncounted,
            }
            for item in claimed
        ],
    )


async def record_all(conn: AsyncConnection, outcomes: Sequence[Firing]) -> None:
    """Record the outcomes of the firings still pending, in a few executemany statements."""
    keys = [(o.schedule_id, o.nominal_time) for o in outcomes]
    pending_query = (
        select(firings.c.schedule_id, firings.c.nominal_time)
        .where(
            tuple_(firings.c.schedule_id, firings.c.nominal_time).in_(keys),
            firings.c.outcome == FiringOutcome.PENDING.value,
        )
        .with_for_update()
    )
    pending = {(r[0], utc(r[1])) for r in await conn.execute(pending_query)}
    todo = [o for o in outcomes if (o.schedule_id, o.nominal_time) in pending]
    if not todo:
        return
    await conn.execute(
        update(firings)
        .where(
            firings.c.schedule_id == bindparam("b_id"),
            firings.c.nominal_time == bindparam("b_tick", type_=UTCDateTime()),
        )
        .values(
            outcome=bindparam("b_outcome"),
            run_id=bindparam("b_run"),
            error=bindparam("b_error"),
            fire_time=bindparam("b_fire", type_=UTCDateTime()),
        ),
        [_params(o) for o in todo],
    )
    groups: dict[tuple[FiringOutcome, bool], list[dict[str, Any]]] = {}
    for o in todo:
        groups.setdefault((o.outcome, bool(o.run_id)), []).append(_params(o))
    for (outcome, with_run), params in groups.items():
        statement = update(schedules).where(schedules.c.id == bindparam("b_id"))
        await conn.execute(statement.values(**counters(outcome, with_run)), params)


def _params(outcome: Firing) -> dict[str, Any]:
    return {
        "b_id": outcome.schedule_id,
        "b_tick": outcome.nominal_time,
        "b_outcome": outcome.outcome.value,
        "b_run": outcome.run_id,
        "b_error": outcome.error,
        "b_fire": outcome.fire_time,
    }
