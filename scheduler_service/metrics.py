"""The scheduler's Prometheus metrics (names prefixed `ghpulse_`).

Two sources:
- counters and histograms this process observes as it applies transitions (`observe`): runs
  triggered, state changes, and run and step durations when a run ends;
- gauges read right before each scrape (`refresh`): runs by job and state and the queue depth from
  the database (the same for every scheduler process sharing it), connected crawlers, their free
  slots and the active watchers (of this process).

A scrape costs no scan of history: active runs are counted from their partial index (migration
0004), finished runs are counted again only every `FINISHED_RECOUNT` (between two counts their
gauges keep the last value).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, cast

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Select, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from common import db
from scheduler_service.db.models import RunRow
from scheduler_service.orchestration.broker import EventBroker
from scheduler_service.orchestration.dispatch import Dispatcher
from scheduler_service.runs.model import EventKind, Run, RunEvent, RunState
from scheduler_service.runs.sql import reads
from scheduler_service.runs.store import RunStore, Transition

log = structlog.get_logger(__name__)
_runs = cast(Table, RunRow.__table__)
#: Runs from minutes to hours; steps from sub-second to an hour.
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, float("inf"))
STEP_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
#: Ended runs whose durations wait for the next scrape to be read (a bound, in case none comes).
MAX_UNRESOLVED = 10_000
QUEUE_STATES = (RunState.PENDING.value, RunState.QUEUED.value)
#: Seconds between two counts of the finished runs (a scan of the whole table).
FINISHED_RECOUNT = 300.0


def _elapsed(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


class _Snapshot(Collector):
    """Gauges whose values `SchedulerMetrics.refresh` reads; rendered as they were read."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], int] = {}
        self.crawlers = 0
        self.slots = 0
        self.free_slots = 0
        self.watchers = 0

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily(
            "ghpulse_runs",
            "Runs in the database by job and state (cluster-wide: every replica reports the same).",
            labels=["job", "state"],
        )
        for (job, state), count in sorted(self.runs.items()):
            runs.add_metric([job, state], count)
        yield runs
        queued = sum(n for (_, state), n in self.runs.items() if state in QUEUE_STATES)
        yield GaugeMetricFamily(
            "ghpulse_queue_depth",
            "Runs waiting for a crawler, pending + queued (cluster-wide).",
            value=queued,
        )
        yield GaugeMetricFamily(
            "ghpulse_crawlers_connected",
            "Crawlers connected to this scheduler replica (per replica; sum over replicas).",
            value=self.crawlers,
        )
        yield GaugeMetricFamily(
            "ghpulse_crawler_slots_connected",
            "Slots of the crawlers connected to this replica (per replica).",
            value=self.slots,
        )
        yield GaugeMetricFamily(
            "ghpulse_crawler_slots_free",
            "Free slots of the crawlers connected to this replica (per replica).",
            value=self.free_slots,
        )
        yield GaugeMetricFamily(
            "ghpulse_watchers_active",
            "WatchRun streams open on this scheduler replica (per replica).",
            value=self.watchers,
        )


class SchedulerMetrics:
    """The scheduler's metrics in their own registry; see the module docstring. Implements the
    orchestrator's `RunMetrics` (`app.py` connects them)."""

    def __init__(
        self, db_url: str, store: RunStore, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.registry = CollectorRegistry()
        self._monotonic = monotonic
        #: The finished runs by (job, state) and when they were counted.
        self._finished: dict[tuple[str, str], int] | None = None
        self._finished_at = 0.0
        self._store = store
        self._engine: AsyncEngine = db.create_async(
            db_url, immediate=False, pool_size=1, max_overflow=0
        )
        self._dispatcher: Dispatcher | None = None
        self._broker: EventBroker | None = None
        #: Run ids that ended without the transition carrying the run (e.g. lease expiry).
        self._unresolved: OrderedDict[str, None] = OrderedDict()
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)
        self.triggered = Counter(
            "ghpulse_runs_triggered",
            "TriggerRun calls by job and disposition, on this replica (per replica).",
            ["job", "disposition"],
            registry=self.registry,
        )
        self.state_changes = Counter(
            "ghpulse_run_state_changes",
            "Run state changes applied by this scheduler replica, by state (per replica).",
            ["state"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "ghpulse_run_duration_seconds",
            "From a run's first start to its end, by job and final state.",
            ["job", "state"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.step_duration = Histogram(
            "ghpulse_step_duration_seconds",
            "Step durations (last attempt of each step), observed when the run ends.",
            ["job", "step", "state"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )

    def attach(self, dispatcher: Dispatcher, broker: EventBroker) -> None:
        """Read connected crawlers and watchers from these at each scrape."""
        self._dispatcher = dispatcher
        self._broker = broker

    # -- observed as transitions are applied -----------------------------------------------------

    def observe(self, transition: Transition) -> None:
        """Count a durable transition's state changes; time the runs it ended."""
        for event in transition.events:
            if event.kind is EventKind.STATE_CHANGED:
                self._state_changed(event, transition.run)

    def _state_changed(self, event: RunEvent, run: Run | None) -> None:
        state = RunState(event.data["state"])
        self.state_changes.labels(state.value).inc()
        if not state.terminal:
            return
        if run is not None and run.id == event.run_id and run.state.terminal:
            self.observe_ended(run)
            return
        self._unresolved[event.run_id] = None
        while len(self._unresolved) > MAX_UNRESOLVED:
            self._unresolved.popitem(last=False)

    def observe_ended(self, run: Run) -> None:
        """Observe the durations of a run that reached a terminal state."""
        job = run.spec.job_kind.value
        duration = _elapsed(run.started_at, run.finished_at)
        if duration is not None:
            self.run_duration.labels(job, run.state.value).observe(duration)
        for step in run.steps:
            step_seconds = _elapsed(step.started_at, step.finished_at)
            if step_seconds is not None:
                self.step_duration.labels(job, step.name, step.state.value).observe(step_seconds)

    def triggered_run(self, job: str, disposition: str) -> None:
        self.triggered.labels(job, disposition).inc()

    # -- read before each scrape ---------------------------------------------------------------

    async def refresh(self) -> None:
        """Update the gauges (and time the runs that ended without their run at hand)."""
        await self._resolve_ended()
        self._snapshot.runs = await self._count_runs()
        workers = self._dispatcher.workers if self._dispatcher else []
        self._snapshot.crawlers = len(workers)
        self._snapshot.slots = sum(conn.slots for conn in workers)
        self._snapshot.free_slots = sum(conn.free_slots for conn in workers)
        self._snapshot.watchers = self._broker.watchers if self._broker else 0

    async def _count_runs(self) -> dict[tuple[str, str], int]:
        active = await self._count(reads.active_counts_statement())
        now = self._monotonic()
        if self._finished is None or now - self._finished_at >= FINISHED_RECOUNT:
            finished = _runs.c.state.not_in(reads.ACTIVE_STATES)
            self._finished = await self._count(reads.counts_statement(finished))
            self._finished_at = now
        return {**self._finished, **active}

    @db.run_to_end
    async def _count(self, statement: Select[Any]) -> dict[tuple[str, str], int]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return {(str(job), str(state)): int(count) for job, state, count in rows}

    async def _resolve_ended(self) -> None:
        while self._unresolved:
            run_id, _ = self._unresolved.popitem(last=False)
            try:
                run = await self._store.get_run(run_id)
            except Exception:
                # Purged meanwhile, or the database is away: this run goes untimed.
                log.debug("metrics.run_unavailable", run_id=run_id, exc_info=True)
                continue
            if run.state.terminal:
                self.observe_ended(run)

    async def close(self) -> None:
        await self._engine.dispose()
