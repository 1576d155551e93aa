"""What the orchestrator is tuned with (`Tunables`, from `SchedulerSettings`) and what it tells the
metrics (`RunMetrics`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from scheduler_service.runs.store import Transition


@dataclass(frozen=True)
class Tunables:
    """The orchestration tunables (from `SchedulerSettings`)."""

    lease_ttl: timedelta = timedelta(seconds=30)
    heartbeat_interval: timedelta = timedelta(seconds=5)
    reconnect_grace: timedelta = timedelta(seconds=15)
    cancel_grace: timedelta = timedelta(seconds=30)
    idempotency_ttl: timedelta = timedelta(hours=24)
    default_deadline: timedelta = timedelta(hours=6)
    default_max_attempts: int = 3
    #: How often a quiet watcher re-reads the log for events written by other scheduler processes
    #: (SQLite, or PostgreSQL while the cluster listener is down; never while it is up).
    watch_poll: timedelta = timedelta(seconds=1)
    #: See `quarantine.Quarantine`.
    quarantine_losses: int = 3
    quarantine_window: timedelta = timedelta(minutes=10)
    quarantine_duration: timedelta = timedelta(minutes=5)
    #: How long a step report may wait to be written with the attempt's next reports.
    step_batch_window: timedelta = timedelta(milliseconds=20)


class RunMetrics(Protocol):
    """What the orchestrator tells the metrics (implemented by `metrics.SchedulerMetrics`)."""

    def observe(self, transition: Transition) -> None:
        """A transition is durable (called once per transition applied by this process)."""

    def triggered_run(self, job: str, disposition: str) -> None:
        """A TriggerRun call resolved to `disposition` for a run of `job`."""


class NullMetrics:
    """Metrics off: the orchestrator's hooks cost nothing."""

    def observe(self, transition: Transition) -> None:
        pass

    def triggered_run(self, job: str, disposition: str) -> None:
        pass
