"""Firing schedules: settle the due ticks of a schedule against the firings table and start runs.

No timer here (see `timer`): `ScheduleFirer.process` may be called at any time, by any
number of scheduler processes; the firings table decides which process fires which tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from prometheus_client import CollectorRegistry, Counter

from common.clock import Clock
from common.errors import GhpulseError
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.runs.model import ConflictPolicy, Disposition, Run, Trigger
from scheduler_service.runs.trigger import TriggerCommand
from scheduler_service.schedules.model import Firing, FiringOutcome, OverlapPolicy, Schedule
from scheduler_service.schedules.store import ScheduleStore
from scheduler_service.schedules.timing import DuePlan, next_run_time, plan_due

log = structlog.get_logger(__name__)


class FiringMetrics:
    """`ghpulse_schedule_firings_total{outcome}`: every tick settled by this process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.firings = Counter(
            "ghpulse_schedule_firings",
            "Schedule ticks settled, by outcome",
            ["outcome"],
            registry=self.registry,
        )


def policy_for(overlap: OverlapPolicy) -> ConflictPolicy:
    """SKIP joins the active run (so the store reports it atomically); QUEUE queues behind it."""
    return ConflictPolicy.QUEUE if overlap is OverlapPolicy.QUEUE else ConflictPolicy.JOIN


def trigger_command(schedule: Schedule, nominal: datetime, request_id: str = "") -> TriggerCommand:
    """The TriggerRun request of `schedule`'s tick `nominal`."""
    template = schedule.template
    return TriggerCommand(
        spec=template.spec,
        policy=policy_for(schedule.overlap),
        request_id=request_id,
        labels=dict(template.labels),
        max_attempts=template.max_attempts,
        trigger=Trigger.SCHEDULE,
        schedule_id=schedule.id,
        nominal_time=nominal,
        triggered_by=f"schedule:{schedule.id}",
    )


def firing_request_id(schedule_id: str, nominal: datetime) -> str:
    """The idempotency key of a tick's run: a recovered firing finds the run already created."""
    return f"schedule:{schedule_id}:{nominal.isoformat()}"


def outcome_of(
    schedule: Schedule, nominal: datetime, run: Run, disposition: Disposition
) -> FiringOutcome:
    if disposition is Disposition.IDEMPOTENT:
        # A recovered firing: the run was created for this tick unless it was joined.
        if run.schedule_id != schedule.id or run.nominal_time != nominal:
            disposition = Disposition.JOINED
        else:
            disposition = Disposition.QUEUED if run.state.value == "queued" else Disposition.CREATED
    if disposition is Disposition.CREATED:
        return FiringOutcome.STARTED
    if disposition is Disposition.QUEUED or schedule.overlap is OverlapPolicy.QUEUE:
        return FiringOutcome.QUEUED
    return FiringOutcome.SKIPPED


@dataclass(frozen=True)
class Settled:
    """What one `process` call did."""

    plan: DuePlan
    #: Whether this process recorded the plan (False: nothing due, or another process did).
    claimed: bool
    #: When the schedule's next tick is due to run (nominal + jitter), None while paused.
    next_due: datetime | None


class ScheduleFirer:
    def __init__(
        self,
        store: ScheduleStore,
        orchestrator: Orchestrator,
        clock: Clock,
        scheduler_id: str,
        metrics: FiringMetrics | None = None,
    ) -> None:
        self.store = store
        self.orchestrator = orchestrator
        self.clock = clock
        self.scheduler_id = scheduler_id
        self.metrics = metrics or FiringMetrics()

    async def process(self, schedule: Schedule) -> Settled:
        """Settle `schedule`'s due ticks now: fire the latest (if not too late), record the
        others as missed. Idempotent, and safe to run in several processes at once."""
        if schedule.paused:
            return Settled(DuePlan(None, ()), False, None)
        now = self.clock.now()
        after = await self._settled_until(schedule)
        plan = plan_due(
            schedule.timing,
            after=after,
            now=now,
            window=schedule.catch_up_window,
            schedule_id=schedule.id,
            jitter=schedule.jitter,
        )
        claimed = plan.latest is not None and await self.store.claim(
            schedule.id, plan, self.scheduler_id, now
        )
        if claimed:
            self._report_missed(schedule, plan)
            if plan.fire is not None:
                await self.fire(schedule, plan.fire)
        after = max(after, plan.latest or after)
        return Settled(
            plan, claimed, next_run_time(schedule.timing, after, schedule.id, schedule.jitter)
        )

    async def _settled_until(self, schedule: Schedule) -> datetime:
        assert schedule.fire_after is not None
        last = await self.store.last_nominal(schedule.id)
        return max(schedule.fire_after, last) if last else schedule.fire_after

    def _report_missed(self, schedule: Schedule, plan: DuePlan) -> None:
        missed = len(plan.missed) + plan.uncounted
        if not missed:
            return
        self.metrics.firings.labels(FiringOutcome.MISSED.value).inc(missed)
        log.warning(
            "schedule.missed",
            schedule_id=schedule.id,
            missed=missed,
            oldest=plan.missed[0].isoformat() if plan.missed else "",
            catch_up=plan.fire.isoformat() if plan.fire else "",
        )

    async def fire(self, schedule: Schedule, nominal: datetime) -> FiringOutcome:
        """Trigger the run of the claimed tick `nominal` and record the firing's outcome."""
        command = trigger_command(schedule, nominal, firing_request_id(schedule.id, nominal))
        try:
            run, disposition = await self.orchestrator.trigger(command)
        except GhpulseError as exc:
            log.error(
                "schedule.fire_failed",
                schedule_id=schedule.id,
                nominal_time=nominal.isoformat(),
                reason=exc.reason,
                error=exc.message,
            )
            await self.store.record(
                schedule.id, nominal, FiringOutcome.MISSED, self.clock.now(), error=exc.message
            )
            self.metrics.firings.labels(FiringOutcome.MISSED.value).inc()
            return FiringOutcome.MISSED
        outcome = outcome_of(schedule, nominal, run, disposition)
        await self.store.record(schedule.id, nominal, outcome, self.clock.now(), run_id=run.id)
        self.metrics.firings.labels(outcome.value).inc()
        log.info(
            "schedule.fired",
            schedule_id=schedule.id,
            nominal_time=nominal.isoformat(),
            outcome=outcome.value,
            run_id=run.id,
            scheduler=self.scheduler_id,
        )
        return outcome

    async def recover(self, pending_timeout: timedelta) -> int:
        """Finish firings claimed by a process that died before recording their outcome."""
        stale = await self.store.stale_pending(self.clock.now() - pending_timeout)
        for firing in stale:
            await self._recover_one(firing)
        return len(stale)

    async def _recover_one(self, firing: Firing) -> None:
        try:
            schedule = await self.store.get(firing.schedule_id)
        except GhpulseError:
            return
        log.warning(
            "schedule.firing_recovered",
            schedule_id=firing.schedule_id,
            nominal_time=firing.nominal_time.isoformat(),
            claimed_by=firing.scheduler_id,
        )
        await self.fire(schedule, firing.nominal_time)
