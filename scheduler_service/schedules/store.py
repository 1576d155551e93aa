"""The schedule store: schedules and their firings, in the run store's database.

Every method is one transaction. The firings table's primary key `(schedule_id, nominal_time)` is
what lets several scheduler processes share one database and still fire each tick exactly once:
the process whose insert commits owns the tick; the others' inserts fail and they move on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, case, delete, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.db import UTCDateTime
from common.jobs import from_json, to_json
from scheduler_service.db.models import ScheduleFiringRow, ScheduleRow
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.schedules.errors import ScheduleExists, ScheduleNotFound
from scheduler_service.schedules.model import (
    Firing,
    FiringOutcome,
    OverlapPolicy,
    Schedule,
    Template,
)
from scheduler_service.schedules.timing import DuePlan

schedules = cast(Table, ScheduleRow.__table__)
firings = cast(Table, ScheduleFiringRow.__table__)
_FIRED = (FiringOutcome.STARTED, FiringOutcome.QUEUED, FiringOutcome.SKIPPED)


class ScheduleStore(ABC):
    """The durable schedule store. Implementation: `SqlScheduleStore` (SQLite, PostgreSQL)."""

    @abstractmethod
    async def create(self, schedule: Schedule, now: datetime) -> Schedule:
        """Insert `schedule` (created and updated at `now`, firing only after `now`); raises
        `ScheduleExists`."""

    @abstractmethod
    async def get(self, schedule_id: str) -> Schedule:
        """The schedule; raises `ScheduleNotFound`."""

    @abstractmethod
    async def list_page(self, after_id: str = "", limit: int = 50) -> list[Schedule]:
        """Schedules with ids after `after_id`, in id order, at most `limit`."""

    @abstractmethod
    async def update(
        self, schedule_id: str, change: Callable[[Schedule], Schedule], now: datetime
    ) -> Schedule:
        """Replace the schedule by `change(current)` under a row lock (so concurrent changes
        through several replicas serialize); bumps `version`. Raises `ScheduleNotFound`."""

    @abstractmethod
    async def delete(self, schedule_id: str) -> None:
        """Delete the schedule and its firings; raises `ScheduleNotFound`."""

    @abstractmethod
    async def last_nominal(self, schedule_id: str) -> datetime | None:
        """The newest nominal time recorded for the schedule, whatever its outcome."""

    @abstractmethod
    async def claim(
        self, schedule_id: str, plan: DuePlan, scheduler_id: str, now: datetime
    ) -> bool:
        """Record the plan's ticks: `missed` ones as MISSED (counted in `missed_count` with
        `plan.uncounted`), `fire` as PENDING, owned by `scheduler_id`. False, with nothing written,
        if another process recorded any of them first or the schedule is paused or gone."""

    @abstractmethod
    async def record(
        self,
        schedule_id: str,
        nominal: datetime,
        outcome: FiringOutcome,
        now: datetime,
        run_id: str = "",
        error: str = "",
    ) -> None:
        """Set the outcome of a PENDING firing and the schedule's counters, `last_fire_time` and
        `last_run_id`. A firing that is no longer pending is left alone."""

    @abstractmethod
    async def stale_pending(self, claimed_before: datetime) -> list[Firing]:
        """PENDING firings claimed before `claimed_before` (their process died mid-firing)."""

    @abstractmethod
    async def firings(self, schedule_id: str, limit: int) -> list[Firing]:
        """The schedule's newest firings, newest first."""


class SqlScheduleStore(ScheduleStore):
    def __init__(self, engine: AsyncEngine, reader: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader

    @classmethod
    def beside(cls, runs: SqlRunStore) -> SqlScheduleStore:
        """A schedule store sharing the run store's engines (SQLite has one writer connection)."""
        return cls(*runs.async_engines())

    async def create(self, schedule: Schedule, now: datetime) -> Schedule:
        schedule = replace(
            schedule,
            created_at=now,
            updated_at=now,
            fire_after=now,
            version=1,
            start_time=schedule.start_time or (now if schedule.interval else None),
        )
        try:
            async with self._engine.begin() as conn:
                await conn.execute(schedules.insert().values(**_to_row(schedule)))
        except IntegrityError:
            raise ScheduleExists(schedule.id) from None
        return schedule

    async def get(self, schedule_id: str) -> Schedule:
        async with self._reader.connect() as conn:
            return await _load(conn, schedule_id)

    async def list_page(self, after_id: str = "", limit: int = 50) -> list[Schedule]:
        statement = (
            select(schedules).where(schedules.c.id > after_id).order_by(schedules.c.id).limit(limit)
        )
        async with self._reader.connect() as conn:
            return [_from_row(dict(r)) for r in (await conn.execute(statement)).mappings()]

    async def update(
        self, schedule_id: str, change: Callable[[Schedule], Schedule], now: datetime
    ) -> Schedule:
        async with self._engine.begin() as conn:
            current = await _load(conn, schedule_id, lock=True)
            changed = replace(
                change(current), id=schedule_id, updated_at=now, version=current.version + 1
            )
            await conn.execute(
                update(schedules).where(schedules.c.id == schedule_id).values(**_to_row(changed))
            )
        return changed

    async def delete(self, schedule_id: str) -> None:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(schedules).where(schedules.c.id == schedule_id))
            if not result.rowcount:
                raise ScheduleNotFound(schedule_id)

    async def last_nominal(self, schedule_id: str) -> datetime | None:
        statement = select(func.max(firings.c.nominal_time)).where(
            firings.c.schedule_id == schedule_id
        )
        async with self._reader.connect() as conn:
            value = (await conn.execute(statement)).scalar()
        return UTCDateTime().process_result_value(value, self._reader.dialect)

    async def claim(
        self, schedule_id: str, plan: DuePlan, scheduler_id: str, now: datetime
    ) -> bool:
        rows = [
            _firing_row(schedule_id, t, FiringOutcome.MISSED, scheduler_id, now)
            for t in plan.missed
        ]
        if plan.fire is not None:
            rows.append(
                _firing_row(schedule_id, plan.fire, FiringOutcome.PENDING, scheduler_id, now)
            )
        if not rows:
            return False
        try:
            async with self._engine.begin() as conn:
                if not await _active(conn, schedule_id):
                    return False
                await conn.execute(firings.insert(), rows)
                missed = len(plan.missed) + plan.uncounted
                if missed:
                    await conn.execute(
                        update(schedules)
                        .where(schedules.c.id == schedule_id)
                        .values(missed_count=schedules.c.missed_count + missed)
                    )
        except IntegrityError:
            # Another scheduler process recorded these ticks first: they are its to fire.
            return False
        return True

    async def record(
        self,
        schedule_id: str,
        nominal: datetime,
        outcome: FiringOutcome,
        now: datetime,
        run_id: str = "",
        error: str = "",
    ) -> None:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(firings)
                .where(
                    firings.c.schedule_id == schedule_id,
                    firings.c.nominal_time == nominal,
                    firings.c.outcome == FiringOutcome.PENDING.value,
                )
                .values(outcome=outcome.value, run_id=run_id, error=error, fire_time=now)
            )
            if not result.rowcount:
                return
            await conn.execute(
                update(schedules)
                .where(schedules.c.id == schedule_id)
                .values(**_counters(outcome, nominal, run_id))
            )

    async def stale_pending(self, claimed_before: datetime) -> list[Firing]:
        statement = select(firings).where(
            firings.c.outcome == FiringOutcome.PENDING.value, firings.c.claimed_at < claimed_before
        )
        async with self._reader.connect() as conn:
            return [_to_firing(dict(r)) for r in (await conn.execute(statement)).mappings()]

    async def firings(self, schedule_id: str, limit: int) -> list[Firing]:
        statement = (
            select(firings)
            .where(firings.c.schedule_id == schedule_id)
            .order_by(firings.c.nominal_time.desc())
            .limit(limit)
        )
        async with self._reader.connect() as conn:
            return [_to_firing(dict(r)) for r in (await conn.execute(statement)).mappings()]


# -- helpers ------------------------------------------------------------------------------------


async def _load(conn: AsyncConnection, schedule_id: str, lock: bool = False) -> Schedule:
    statement = select(schedules).where(schedules.c.id == schedule_id)
    if lock:
        statement = statement.with_for_update()
    row = (await conn.execute(statement)).mappings().first()
    if row is None:
        raise ScheduleNotFound(schedule_id)
    return _from_row(dict(row))


async def _active(conn: AsyncConnection, schedule_id: str) -> bool:
    # The row lock also orders concurrent claims of one schedule by several processes.
    statement = select(schedules.c.paused).where(schedules.c.id == schedule_id).with_for_update()
    paused = (await conn.execute(statement)).scalar()
    return paused is False


def _counters(outcome: FiringOutcome, nominal: datetime, run_id: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if outcome is FiringOutcome.SKIPPED:
        values["skipped_count"] = schedules.c.skipped_count + 1
    if outcome is FiringOutcome.MISSED:
        values["missed_count"] = schedules.c.missed_count + 1
    # Outcomes of two ticks may be recorded out of order (a recovered firing): newest wins.
    tick = literal(nominal, UTCDateTime())
    newest = or_(schedules.c.last_fire_time.is_(None), schedules.c.last_fire_time <= tick)
    if outcome in _FIRED:
        values["last_fire_time"] = case((newest, tick), else_=schedules.c.last_fire_time)
    if run_id:
        values["last_run_id"] = case((newest, run_id), else_=schedules.c.last_run_id)
    return values


def _firing_row(
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


def _to_row(schedule: Schedule) -> dict[str, Any]:
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
    }


def _from_row(row: dict[str, Any]) -> Schedule:
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
    )


def _to_firing(row: dict[str, Any]) -> Firing:
    return Firing(
        schedule_id=row["schedule_id"],
        nominal_time=row["nominal_time"],
        outcome=FiringOutcome(row["outcome"]),
        run_id=row["run_id"],
        fire_time=row["fire_time"],
        scheduler_id=row["scheduler_id"],
        error=row["error"],
    )
