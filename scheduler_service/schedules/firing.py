"""Firing schedules: claim the due schedules, start the runs of their due ticks, record outcomes.

No timer here (see `timer`): `ScheduleFirer.claim_and_fire` may be called at any time, by any
number of scheduler processes; the store's claim decides which process fires which tick.
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
from scheduler_service.schedules.due import Claimed
from scheduler_service.schedules.model import Firing, FiringOutcome, OverlapPolicy, Schedule
from scheduler_service.schedules.store import ScheduleStore
from scheduler_service.schedules.timing import DuePlan

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

    async def claim(self, limit: int) -> list[Claimed]:
        """Claim up to `limit` due schedules no other process holds (see `ScheduleStore.
        claim_due`); `fire_claimed` then starts their runs."""
        return await self.store.claim_due(self.clock.now(), self.scheduler_id, limit)

    async def process(self, schedule: Schedule) -> Settled:
        """Settle `schedule`'s due ticks now, due or not by its stored due time: fire the latest
        (if not too late), record the others as missed. Safe in several processes at once."""
        claimed = await self.store.claim_due(self.clock.now(), self.scheduler_id, 1, schedule.id)
        if not claimed:
            return Settled(DuePlan(None, ()), False, None)
        await self.fire_claimed(claimed)
        settlement = claimed[0].settlement
        return Settled(settlement.plan, settlement.plan.latest is not None, settlement.next_due)

    async def fire_claimed(self, claimed: list[Claimed]) -> None:
        """Start the runs of the ticks `claimed` fires and record every outcome."""
        for item in claimed:
            self._report_missed(item.schedule, item.settlement.plan)
        due = [(c.schedule, c.settlement.plan.fire) for c in claimed if c.settlement.plan.fire]
        # The runs of the batch are created in one transaction, and their outcomes recorded
        # together in another: two transactions per batch, not one per schedule.
        outcomes = await self._trigger_all(due)
        await self.store.record(outcomes)
        for outcome in outcomes:
            self.metrics.firings.labels(outcome.outcome.value).inc()

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
        outcome = await self._trigger(schedule, nominal)
        await self.store.record([outcome])
        self.metrics.firings.labels(outcome.outcome.value).inc()
        return outcome.outcome

    async def _trigger_all(self, due: list[tuple[Schedule, datetime]]) -> list[Firing]:
        """Trigger the runs of the ticks `due` in one transaction: the firings' outcomes."""
        if not due:
            return []
        commands = [trigger_command(s, n, firing_request_id(s.id, n)) for s, n in due]
        results: list[tuple[Run, Disposition] | GhpulseError]
        try:
            results = await self.orchestrator.trigger_many(commands)
        except GhpulseError as exc:
            results = [exc] * len(due)
        return [self._firing(s, n, result) for (s, n), result in zip(due, results, strict=True)]

    async def _trigger(self, schedule: Schedule, nominal: datetime) -> Firing:
        """Trigger the run of tick `nominal`: the firing's outcome, to record."""
        command = trigger_command(schedule, nominal, firing_request_id(schedule.id, nominal))
        try:
            return self._firing(schedule, nominal, await self.orchestrator.trigger(command))
        except GhpulseError as exc:
            return self._firing(schedule, nominal, exc)

    def _firing(
        self, schedule: Schedule, nominal: datetime, result: tuple[Run, Disposition] | GhpulseError
    ) -> Firing:
        if isinstance(result, GhpulseError):
            log.error(
                "schedule.fire_failed",
                schedule_id=schedule.id,
                nominal_time=nominal.isoformat(),
                reason=result.reason,
                error=result.message,
            )
            return Firing(
                schedule.id,
                nominal,
                FiringOutcome.MISSED,
                fire_time=self.clock.now(),
                error=result.message,
            )
        run, disposition = result
        outcome = outcome_of(schedule, nominal, run, disposition)
        log.info(
            "schedule.fired",
            schedule_id=schedule.id,
            nominal_time=nominal.isoformat(),
            outcome=outcome.value,
            run_id=run.id,
            scheduler=self.scheduler_id,
        )
        return Firing(schedule.id, nominal, outcome, run_id=run.id, fire_time=self.clock.now())

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
