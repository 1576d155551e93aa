"""Scheduler replicas in one process for the schedule tests: each a firer, a timer and the schedule
operations with their own engines (their own connections) on one database, with one injected
clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from common.clock import ManualClock
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.orchestration.tunables import Tunables
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.schedules.firing import ScheduleFirer
from scheduler_service.schedules.ops import ScheduleOps
from scheduler_service.schedules.store import SqlScheduleStore
from scheduler_service.schedules.timer import ScheduleTimer

#: The replicas' clock starts here.
START = datetime(2026, 1, 1, 9, 45, tzinfo=UTC)


@dataclass
class Replica:
    runs: SqlRunStore
    store: SqlScheduleStore
    ops: ScheduleOps
    firer: ScheduleFirer
    timer: ScheduleTimer


@asynccontextmanager
async def open_replicas(
    url: str, count: int = 2, store: type[SqlScheduleStore] = SqlScheduleStore
) -> AsyncIterator[tuple[ManualClock, list[Replica]]]:
    """`count` replicas (named a, b) on the database `url`, each with its own engines."""
    clock = ManualClock(START)
    replicas: list[Replica] = []
    try:
        for name in "ab"[:count]:
            runs = SqlRunStore.open(url)
            schedule_store = store(*runs.async_engines())
            orchestrator = Orchestrator(runs, clock, Tunables())
            firer = ScheduleFirer(schedule_store, orchestrator, clock, name)
            timer = ScheduleTimer(schedule_store, firer, clock, timedelta(seconds=2))
            ops = ScheduleOps(schedule_store, orchestrator, clock)
            replicas.append(Replica(runs, schedule_store, ops, firer, timer))
        yield clock, replicas
    finally:
        for replica in replicas:
            await replica.timer.stop()
            await replica.runs.close()
