"""Jobs as the crawler executes them: an ordered list of named, idempotent steps.

A step receives a `StepContext`, reports `(current, total, message)` progress through it and
returns a JSON-compatible checkpoint output. Steps completed by an earlier attempt are skipped;
their outputs are in `ctx.outputs`. `await ctx.progress(...)` and `ctx.check_stopped()` are the safe
points where a cancelled or handed-back attempt stops (by raising `AttemptStopped`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from common.jobs import JobKind, JobSpec
from common.jobs.fanout import PLAN_OUTPUT, PLAN_STEP, needs_plan
from common.jobs.plugin import kind_violations
from crawler_service.errors import AttemptStopped, UnknownJob

Output = dict[str, Any]
ProgressSink = Callable[[str, int, int, str], Awaitable[None]]


@dataclass
class StepContext:
    """What a step sees of its run."""

    run_id: str
    attempt: int
    spec: JobSpec
    step: str
    #: Outputs of the steps already completed (by this attempt or an earlier one), by step name.
    outputs: Mapping[str, Output]
    _sink: ProgressSink
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def log(self) -> Any:
        return structlog.get_logger("ghpulse.step").bind(
            run_id=self.run_id, attempt=self.attempt, step=self.step
        )

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def check_stopped(self) -> None:
        """A safe point: raise `AttemptStopped` if the attempt must stop."""
        if self._stop.is_set():
            raise AttemptStopped

    async def progress(self, current: int, total: int, message: str = "") -> None:
        """Report progress (cheap; the latest value wins) and act as a safe point."""
        self.check_stopped()
        await self._sink(self.step, current, total, message)


class Step(Protocol):
    """One named, idempotent unit of a job."""

    name: str

    async def run(self, ctx: StepContext) -> Output:
        """Do the work; return the checkpoint output (JSON-compatible)."""
        ...


def _merge_outputs(outputs: Mapping[str, Output]) -> Output:
    merged: Output = {}
    for output in outputs.values():
        merged.update(output)
    return merged


@dataclass(frozen=True)
class Job:
    """A job and its steps. `kind` is a built-in `JobKind` or the name of a plugin job (runs of
    `PluginJobSpec(kind=...)`). `summarize` turns the step outputs into the run's output."""

    kind: str
    steps: Sequence[Step]
    summarize: Callable[[JobSpec, Mapping[str, Output]], Output] = lambda _spec, outputs: (
        _merge_outputs(outputs)
    )
    #: The step listing the repositories of a fan-out parent that names an organization (see
    #: `common.jobs.fanout`); None: the job does not fan out.
    plan: Step | None = None

    def steps_for(self, spec: JobSpec) -> Sequence[Step]:
        """The steps to run for `spec` (recalculate runs only the steps it names)."""
        wanted = getattr(spec, "steps", None)
        if not wanted:
            return self.steps
        return [step for step in self.steps if step.name in wanted]

    def attempt_steps(self, spec: JobSpec) -> Sequence[Step]:
        """The steps an attempt of a run of `spec` runs: only the plan for a parent that needs
        one (the scheduler then creates a child run per repository), else `steps_for`."""
        if self.plan is not None and needs_plan(spec):
            return [self.plan]
        return self.steps_for(spec)

    def summary(self, spec: JobSpec, outputs: Mapping[str, Output]) -> Output:
        """The attempt's output: the plan's repositories as `{"fan_out": [...]}`, or the run's
        output (`summarize`)."""
        plan = outputs.get(PLAN_STEP)
        if self.plan is not None and plan is not None and needs_plan(spec):
            return {PLAN_OUTPUT: list(plan.get("repositories", []))}
        return self.summarize(spec, outputs)


_BUILT_IN = frozenset(kind.value for kind in JobKind) - {JobKind.PLUGIN.value}


class JobRegistry:
    """The jobs this crawler can execute, by kind (`JobSpec.kind`)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def register(self, job: Job) -> None:
        """Add `job`, replacing any job of the same kind; raises ValueError for a name that is
        neither a built-in job's nor a valid plugin job name."""
        if job.kind not in _BUILT_IN:
            violations = kind_violations("kind", job.kind)
            if violations:
                raise ValueError(violations[0].description)
        self._jobs[str(job.kind)] = job

    def get(self, kind: str) -> Job:
        try:
            return self._jobs[kind]
        except KeyError:
            raise UnknownJob(
                f"this crawler has no job {kind!r} (plugins add jobs: GHPULSE_CRAWLER_PLUGINS)",
                kind=kind,
            ) from None

    @property
    def kinds(self) -> list[str]:
        return sorted(self._jobs)
