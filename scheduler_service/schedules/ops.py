"""The schedule operations behind the schedule RPCs and start-up seeding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from common.clock import Clock
from common.jobs import CrawlSpec
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.runs.model import Disposition, Run
from scheduler_service.schedules import due
from scheduler_service.schedules.errors import ScheduleExists
from scheduler_service.schedules.firing import trigger_command
from scheduler_service.schedules.model import Firing, Schedule, Template, new_schedule_id
from scheduler_service.schedules.store import ScheduleStore
from scheduler_service.schedules.validation import validate_schedule

log = structlog.get_logger(__name__)
SEED_REPOSITORIES_ID = "config-repositories"
SEED_ORGANIZATION_PREFIX = "config-org-"
#: Changing these restarts the tick sequence: ticks before the change are neither run nor missed.
TIMING_FIELDS = frozenset({"cron", "interval", "start_time", "time_zone"})


@dataclass(frozen=True)
class ScheduleView:
    """A schedule with what is computed at read time."""

    schedule: Schedule
    next_fire_time: datetime | None
    firings: tuple[Firing, ...] = ()


def _no_change(_schedule_id: str) -> None:
    return None


class ScheduleOps:
    def __init__(
        self,
        store: ScheduleStore,
        orchestrator: Orchestrator,
        clock: Clock,
        on_change: Callable[[str], None] = _no_change,
    ) -> None:
        self.store = store
        self.orchestrator = orchestrator
        self.clock = clock
        #: Told the id of every schedule changed through this process (to re-arm its timer).
        self.on_change = on_change

    async def view(self, schedule: Schedule, firing_count: int = 0) -> ScheduleView:
        firings = await self.store.firings(schedule.id, firing_count) if firing_count else []
        return ScheduleView(schedule, self.next_fire_time(schedule), tuple(firings))

    def next_fire_time(self, schedule: Schedule) -> datetime | None:
        """The next nominal time after now (None while paused)."""
        if schedule.paused:
            return None
        after = max(self.clock.now(), schedule.fire_after or self.clock.now())
        return schedule.timing.next_after(after)

    async def create(
        self, schedule: Schedule, by: str = "", default_jitter: bool = False
    ) -> Schedule:
        """Validate and store `schedule`, recording `by` (who asks) as its creator; with
        `default_jitter` (no jitter was asked for), its jitter is `due.default_jitter`."""
        now = self.clock.now()
        schedule = replace(
            schedule, id=schedule.id or new_schedule_id(), created_by=by, updated_by=by
        )
        schedule = validate_schedule(schedule, now)
        if default_jitter:
            schedule = replace(schedule, jitter=due.default_jitter(schedule.timing, now))
        created = await self.store.create(schedule, now)
        self.on_change(created.id)
        log.info(
            "schedule.created",
            schedule_id=created.id,
            cron=created.cron,
            interval=str(created.interval or ""),
            time_zone=created.time_zone,
        )
        return created

    async def get(self, schedule_id: str, firing_count: int = 0) -> ScheduleView:
        return await self.view(await self.store.get(schedule_id), firing_count)

    async def list_page(self, after_id: str, limit: int) -> list[ScheduleView]:
        return [await self.view(s) for s in await self.store.list_page(after_id, limit)]

    async def update(
        self, schedule_id: str, incoming: Schedule, fields: set[str], by: str = ""
    ) -> Schedule:
        now = self.clock.now()

        def change(current: Schedule) -> Schedule:
            changed = validate_schedule(_apply_fields(current, incoming, fields), now)
            changed = replace(changed, updated_by=by)
            return _restart_if_needed(current, changed, fields & TIMING_FIELDS, now)

        updated = await self.store.update(schedule_id, change, now)
        self.on_change(schedule_id)
        log.info("schedule.updated", schedule_id=schedule_id, fields=sorted(fields))
        return updated

    async def set_paused(self, schedule_id: str, paused: bool, by: str = "") -> Schedule:
        now = self.clock.now()

        def change(current: Schedule) -> Schedule:
            changed = replace(current, paused=paused, updated_by=by)
            return _restart_if_needed(current, changed, set(), now)

        updated = await self.store.update(schedule_id, change, now)
        self.on_change(schedule_id)
        log.info("schedule.paused" if paused else "schedule.resumed", schedule_id=schedule_id)
        return updated

    async def delete(self, schedule_id: str) -> None:
        await self.store.delete(schedule_id)
        self.on_change(schedule_id)
        log.info("schedule.deleted", schedule_id=schedule_id)

    async def run_now(self, schedule_id: str) -> tuple[Run, Disposition]:
        """Trigger the template now (nominal time: now), under the schedule's overlap policy."""
        schedule = await self.store.get(schedule_id)
        run, disposition = await self.orchestrator.trigger(
            trigger_command(schedule, self.clock.now())
        )
        log.info(
            "schedule.run_now",
            schedule_id=schedule_id,
            run_id=run.id,
            disposition=disposition.value,
        )
        return run, disposition

    # -- seeding ------------------------------------------------------------------------------

    async def seed(self, repositories: Sequence[str], organizations: Sequence[str]) -> list[str]:
        """Create (or re-target) the default hourly incremental crawl schedules of the
        configuration: one for the repositories, one per organization. Everything else about an
        existing schedule (pause, cron, template options...) is left as the API last set it."""
        wanted: list[tuple[str, CrawlSpec]] = []
        if repositories:
            wanted.append((SEED_REPOSITORIES_ID, CrawlSpec(tuple(repositories))))
        for org in organizations:
            wanted.append((SEED_ORGANIZATION_PREFIX + org.lower(), CrawlSpec(organization=org)))
        for schedule_id, spec in wanted:
            await self._seed_one(schedule_id, spec)
        return [schedule_id for schedule_id, _ in wanted]

    async def _seed_one(self, schedule_id: str, spec: CrawlSpec) -> None:
        try:
            await self.create(
                Schedule(id=schedule_id, template=Template(spec)), default_jitter=True
            )
            return
        except ScheduleExists:
            pass
        current = await self.store.get(schedule_id)
        if _targets(current.template.spec) == _targets(spec):
            return

        def retarget(existing: Schedule) -> Schedule:
            old = existing.template.spec
            refresh = old.refresh if isinstance(old, CrawlSpec) else False
            new_spec = CrawlSpec(spec.repositories, spec.organization, refresh)
            return replace(existing, template=replace(existing.template, spec=new_spec))

        await self.store.update(schedule_id, retarget, self.clock.now())
        self.on_change(schedule_id)
        log.info("schedule.seed_retargeted", schedule_id=schedule_id)


def _targets(spec: object) -> tuple[tuple[str, ...], str]:
    if isinstance(spec, CrawlSpec):
        return spec.repositories, spec.organization
    return (), ""


def _restart_if_needed(
    current: Schedule, changed: Schedule, timing_fields: set[str], now: datetime
) -> Schedule:
    """A resumed schedule, or one whose timing changed, fires only ticks after now: the ticks in
    between were paused (or belong to the old timing), not missed."""
    resumed = current.paused and not changed.paused
    if resumed or (timing_fields and changed.timing != current.timing):
        return replace(changed, fire_after=now)
    return changed


def _apply_fields(current: Schedule, incoming: Schedule, fields: set[str]) -> Schedule:
    """`current` with the masked `fields` taken from `incoming`."""
    template = current.template
    if "template" in fields:
        template = incoming.template
    if "template.job" in fields:
        template = replace(template, spec=incoming.template.spec)
    if "template.labels" in fields:
        template = replace(template, labels=incoming.template.labels)
    if "template.max_attempts" in fields:
        template = replace(template, max_attempts=incoming.template.max_attempts)
    plain = fields - {"template", "template.job", "template.labels", "template.max_attempts"}
    changed = replace(current, template=template, **{f: getattr(incoming, f) for f in plain})
    if changed.interval is not None and changed.start_time is None:
        changed = replace(changed, start_time=current.created_at)
    return changed
