"""The schedule store: schedules and their firings, in the run store's database.

Every method is one transaction. Several scheduler processes share one database: due schedules
are claimed with `FOR UPDATE SKIP LOCKED` (each replica takes rows the others do not hold, so a
tick's work is done once, by one replica), and the firings table's primary key
`(schedule_id, nominal_time)` still refuses a second firing of a tick whatever happens.

Lock order, everywhere: the schedule row first, then its firings. A claim locks schedules and
inserts firings; recording an outcome locks the schedule, then updates the firing; an update
or delete locks the schedule. No two transactions can then wait on each other in a cycle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import case, delete, func, literal, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.db import UTCDateTime, runs_to_end
from scheduler_service.cluster.notice import Notifier
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.schedules import due
from scheduler_service.schedules.due import Claimed
from scheduler_service.schedules.errors import ScheduleExists, ScheduleNotFound
from scheduler_service.schedules.model import Firing, FiringOutcome, Schedule
from scheduler_service.schedules.rows import (
    firing_row,
    firings,
    from_row,
    record_all,
    schedules,
    to_firing,
    to_row,
    write_claims,
)
from scheduler_service.schedules.timing import DuePlan


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
        through several replicas serialize); bumps `version` and recomputes when it is next due.
        Raises `ScheduleNotFound`."""

    @abstractmethod
    async def delete(self, schedule_id: str) -> None:
        """Delete the schedule and its firings; raises `ScheduleNotFound`."""

    @abstractmethod
    async def claim_due(
        self, now: datetime, scheduler_id: str, limit: int, schedule_id: str = ""
    ) -> list[Claimed]:
        """Claim up to `limit` active schedules due by `now` that no other transaction holds
        (or only `schedule_id`, due or not, waiting for it if held), and settle each at `now`
        (`due.settle`): record its missed ticks as MISSED (counted in `missed_count`), the tick
        to fire as PENDING owned by `scheduler_id`, and move `last_nominal` and `next_due`.
        Every claimed schedule is returned, also those with nothing due (only re-armed)."""

    @abstractmethod
    async def claim(
        self, schedule_id: str, plan: DuePlan, scheduler_id: str, now: datetime
    ) -> bool:
        """Record a plan made elsewhere: `missed` ticks as MISSED (counted in `missed_count` with
        `plan.uncounted`), `fire` as PENDING, owned by `scheduler_id`. False, with nothing
        written, if any of them is recorded already or the schedule is paused or gone."""

    @abstractmethod
    async def next_due(self) -> datetime | None:
        """When the first active schedule is next due (None: none is)."""

    @abstractmethod
    async def record(self, outcomes: Sequence[Firing]) -> None:
        """Set the outcome, `run_id`, `error` and `fire_time` of these PENDING firings, and
        their schedules' counters, `last_fire_time` and `last_run_id`. A firing that is no
        longer pending is left alone."""

    @abstractmethod
    async def stale_pending(self, claimed_before: datetime) -> list[Firing]:
        """PENDING firings claimed before `claimed_before` (their process died mid-firing)."""

    @abstractmethod
    async def firings(self, schedule_id: str, limit: int) -> list[Firing]:
        """The schedule's newest firings, newest first."""

    @abstractmethod
    async def purge_firings(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` settled firings of ticks before `before`; how many were."""


@runs_to_end
class SqlScheduleStore(ScheduleStore):
    def __init__(
        self, engine: AsyncEngine, reader: AsyncEngine, notifier: Notifier | None = None
    ) -> None:
        self._engine = engine
        self._reader = reader
        #: Tells other replicas' timers about created and changed schedules (PostgreSQL).
        self._notifier = notifier

    @classmethod
    def beside(cls, runs: SqlRunStore) -> SqlScheduleStore:
        """A schedule store sharing the run store's engines (SQLite has one writer connection)."""
        return cls(*runs.async_engines(), runs.notifier)

    async def create(self, schedule: Schedule, now: datetime) -> Schedule:
        schedule = replace(
            schedule,
            created_at=now,
            updated_at=now,
            fire_after=now,
            version=1,
            start_time=schedule.start_time or (now if schedule.interval else None),
            last_nominal=None,
        )
        schedule = replace(schedule, next_due=due.next_due(schedule))
        try:
            async with self._engine.begin() as conn:
                await conn.execute(schedules.insert().values(**to_row(schedule)))
                await self._changed(conn)
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
            return [from_row(dict(r)) for r in (await conn.execute(statement)).mappings()]

    async def update(
        self, schedule_id: str, change: Callable[[Schedule], Schedule], now: datetime
    ) -> Schedule:
        async with self._engine.begin() as conn:
            current = await _load(conn, schedule_id, lock=True)
            changed = replace(
                change(current),
                id=schedule_id,
                updated_at=now,
                version=current.version + 1,
                last_nominal=current.last_nominal,
            )
            changed = replace(changed, next_due=due.next_due(changed))
            await conn.execute(
                update(schedules).where(schedules.c.id == schedule_id).values(**to_row(changed))
            )
            await self._changed(conn)
        return changed

    async def _changed(self, conn: AsyncConnection) -> None:
        if self._notifier is not None:
            await self._notifier.schedules_changed(conn)

    async def delete(self, schedule_id: str) -> None:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(schedules).where(schedules.c.id == schedule_id))
            if not result.rowcount:
                raise ScheduleNotFound(schedule_id)

    async def claim_due(
        self, now: datetime, scheduler_id: str, limit: int, schedule_id: str = ""
    ) -> list[Claimed]:
        if schedule_id:
            query = select(schedules).where(schedules.c.id == schedule_id).with_for_update()
        else:
            query = (
                select(schedules)
                .where(schedules.c.next_due_at <= now)
                .order_by(schedules.c.next_due_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        claimed: list[Claimed] = []
        try:
            async with self._engine.begin() as conn:
                rows = (await conn.execute(query)).mappings().all()
                claimed = [Claimed(s, due.settle(s, now)) for s in map(from_row, map(dict, rows))]
                claimed = [c for c in claimed if not c.schedule.paused]
                await write_claims(conn, claimed, scheduler_id, now)
        except IntegrityError:
            # A tick was recorded without moving `last_nominal` (`claim`, or a replica of an
            # older version during a rolling upgrade): catch up from the firings, claim again.
            await self._catch_up([c.schedule.id for c in claimed])
            return []
        return claimed

    async def _catch_up(self, schedule_ids: list[str]) -> None:
        newest = (
            select(func.max(firings.c.nominal_time))
            .where(firings.c.schedule_id == schedules.c.id)
            .scalar_subquery()
        )
        behind = or_(schedules.c.last_nominal.is_(None), schedules.c.last_nominal < newest)
        async with self._engine.begin() as conn:
            await conn.execute(
                update(schedules)
                .where(schedules.c.id.in_(schedule_ids), behind)
                .values(last_nominal=newest)
            )

    async def claim(
        self, schedule_id: str, plan: DuePlan, scheduler_id: str, now: datetime
    ) -> bool:
        rows = [
            firing_row(schedule_id, t, FiringOutcome.MISSED, scheduler_id, now) for t in plan.missed
        ]
        if plan.fire is not None:
            rows.append(
                firing_row(schedule_id, plan.fire, FiringOutcome.PENDING, scheduler_id, now)
            )
        if not rows:
            return False
        latest = literal(plan.latest, UTCDateTime())
        try:
            async with self._engine.begin() as conn:
                if not await _active(conn, schedule_id):
                    return False
                await conn.execute(firings.insert(), rows)
                newer = or_(schedules.c.last_nominal.is_(None), schedules.c.last_nominal < latest)
                missed = len(plan.missed) + plan.uncounted
                await conn.execute(
                    update(schedules)
                    .where(schedules.c.id == schedule_id)
                    .values(
                        missed_count=schedules.c.missed_count + missed,
                        last_nominal=case((newer, latest), else_=schedules.c.last_nominal),
                    )
                )
        except IntegrityError:
            # Another scheduler process recorded these ticks first: they are its to fire.
            return False
        return True

    async def next_due(self) -> datetime | None:
        statement = select(func.min(schedules.c.next_due_at))
        async with self._reader.connect() as conn:
            value: datetime | None = (await conn.execute(statement)).scalar()
        return value

    async def record(self, outcomes: Sequence[Firing]) -> None:
        if not outcomes:
            return
        ids = sorted({o.schedule_id for o in outcomes})
        async with self._engine.begin() as conn:
            # The schedules first, in id order: the lock order of claims (see the module).
            await conn.execute(
                select(schedules.c.id)
                .where(schedules.c.id.in_(ids))
                .order_by(schedules.c.id)
                .with_for_update()
            )
            await record_all(conn, outcomes)

    async def stale_pending(self, claimed_before: datetime) -> list[Firing]:
        statement = select(firings).where(
            firings.c.outcome == FiringOutcome.PENDING.value, firings.c.claimed_at < claimed_before
        )
        async with self._reader.connect() as conn:
            return [to_firing(dict(r)) for r in (await conn.execute(statement)).mappings()]

    async def firings(self, schedule_id: str, limit: int) -> list[Firing]:
        statement = (
            select(firings)
            .where(firings.c.schedule_id == schedule_id)
            .order_by(firings.c.nominal_time.desc())
            .limit(limit)
        )
        async with self._reader.connect() as conn:
            return [to_firing(dict(r)) for r in (await conn.execute(statement)).mappings()]

    async def purge_firings(self, before: datetime, limit: int) -> int:
        key = tuple_(firings.c.schedule_id, firings.c.nominal_time)
        oldest = (
            select(firings.c.schedule_id, firings.c.nominal_time)
            .where(
                firings.c.nominal_time < before,
                firings.c.outcome != FiringOutcome.PENDING.value,
            )
            .limit(limit)
            # Replicas purging at once take different rows instead of waiting on each other.
            .with_for_update(skip_locked=True)
        )
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(firings).where(key.in_(oldest)))
        return int(result.rowcount or 0)


# -- helpers ------------------------------------------------------------------------------------


async def _load(conn: AsyncConnection, schedule_id: str, lock: bool = False) -> Schedule:
    statement = select(schedules).where(schedules.c.id == schedule_id)
    if lock:
        statement = statement.with_for_update()
    row = (await conn.execute(statement)).mappings().first()
    if row is None:
        raise ScheduleNotFound(schedule_id)
    return from_row(dict(row))


async def _active(conn: AsyncConnection, schedule_id: str) -> bool:
    # The row lock also orders concurrent claims of one schedule by several processes.
    statement = select(schedules.c.paused).where(schedules.c.id == schedule_id).with_for_update()
    paused = (await conn.execute(statement)).scalar()
    return paused is False
