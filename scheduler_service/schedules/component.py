"""The schedule component of the scheduler process: store, firer, timer, operations and seeding."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from common.clock import Clock
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.schedules.firing import FiringMetrics, ScheduleFirer
from scheduler_service.schedules.ops import ScheduleOps
from scheduler_service.schedules.store import SqlScheduleStore
from scheduler_service.schedules.timer import ScheduleTimer
from scheduler_service.settings import SchedulerSettings


def default_scheduler_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Schedules:
    """Built by `SchedulerApp`; `start()` after migrations, `stop()` before the store closes.
    `ops` are the operations behind the schedule RPCs."""

    def __init__(
        self,
        settings: SchedulerSettings,
        runs: SqlRunStore,
        orchestrator: Orchestrator,
        clock: Clock,
        metrics: FiringMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = SqlScheduleStore.beside(runs)
        scheduler_id = settings.scheduler_id or default_scheduler_id()
        self.firer = ScheduleFirer(self.store, orchestrator, clock, scheduler_id, metrics)
        self.timer = ScheduleTimer(
            self.store,
            self.firer,
            clock,
            timedelta(seconds=settings.schedule_poll),
            timedelta(seconds=settings.schedule_firing_retention),
            # Live: other replicas' schedule changes arrive by notice (`cluster.feed`).
            live=lambda: orchestrator.broker.live,
        )
        on_change = self.timer.changed if settings.schedules_enabled else _ignore
        self.ops = ScheduleOps(self.store, orchestrator, clock, on_change)

    async def start(self) -> None:
        """Seed the configured schedules, then start the timer."""
        split = SchedulerSettings.split
        await self.ops.seed(
            split(self.settings.schedule_repositories), split(self.settings.schedule_organizations)
        )
        if self.settings.schedules_enabled:
            await self.timer.start()

    async def stop(self) -> None:
        await self.timer.stop()


def _ignore(_schedule_id: str) -> None:
    return None
