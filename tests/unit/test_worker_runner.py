"""Running one attempt: steps in order, completed steps skipped, failures classified, stops."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy.exc import OperationalError

from common.jobs import CrawlSpec, JobKind, PluginJobSpec, RecalculateSpec
from crawler_service.app import load_plugins
from crawler_service.errors import PermanentError, StepFailed, TransientError, UnknownJob
from crawler_service.jobs.registry import Job, JobRegistry, Output, StepContext
from crawler_service.worker.runner import (
    AttemptError,
    AttemptKey,
    AttemptOutcome,
    AttemptRunner,
    StepOutcome,
    StopReason,
    StopSignal,
    attempt_error,
)

KEY = AttemptKey("run-1", 1)
SPEC = CrawlSpec(("octo/repo",))


class Recorder:
    """An AttemptReporter that keeps every report."""

    def __init__(self) -> None:
        self.reports: list[tuple[Any, ...]] = []

    def started(self, step: str, total: int, message: str) -> None:
        self.reports.append(("started", step))

    def progress(self, step: str, current: int, total: int, message: str) -> None:
        self.reports.append(("progress", step, current, total, message))

    def finished(self, step: str, state: StepOutcome, output: Output | None, message: str) -> None:
        self.reports.append(("finished", step, state, output))

    def result(
        self, outcome: AttemptOutcome, output: Output | None, error: AttemptError | None
    ) -> None:
        self.reports.append(("result", outcome, output, error))


@dataclass
class CountingStep:
    name: str
    count: int = 2

    async def run(self, ctx: StepContext) -> Output:
        for current in range(1, self.count + 1):
            await ctx.progress(current, self.count, f"{self.name} {current}")
        return {f"{self.name}_count": self.count, f"{self.name}_saw": sorted(ctx.outputs)}


@dataclass
class RaisingStep:
    name: str
    error: BaseException

    async def run(self, ctx: StepContext) -> Output:
        raise self.error


@dataclass
class StoppingStep:
    """Asks its own attempt to stop (as a cancel or a drain would), then reaches a safe point."""

    name: str
    signal: StopSignal
    reason: StopReason

    async def run(self, ctx: StepContext) -> Output:
        self.signal.request(self.reason)
        await ctx.progress(1, 1)
        raise AssertionError("the safe point did not stop the attempt")


def _registry(*steps: Any) -> JobRegistry:
    registry = JobRegistry()
    registry.register(Job(JobKind.CRAWL, list(steps)))
    registry.register(Job(JobKind.RECALCULATE, list(steps)))
    return registry


async def _run(
    registry: JobRegistry,
    spec: Any = SPEC,
    completed: dict[str, Output] | None = None,
    signal: StopSignal | None = None,
) -> list[tuple[Any, ...]]:
    recorder = Recorder()
    runner = AttemptRunner(registry, KEY, spec, completed or {}, recorder, signal or StopSignal())
    await runner.run()
    return recorder.reports


async def test_runs_steps_in_order_and_summarizes() -> None:
    reports = await _run(_registry(CountingStep("fetch"), CountingStep("count", 1)))

    assert reports == [
        ("started", "fetch"),
        ("progress", "fetch", 1, 2, "fetch 1"),
        ("progress", "fetch", 2, 2, "fetch 2"),
        ("finished", "fetch", StepOutcome.SUCCEEDED, {"fetch_count": 2, "fetch_saw": []}),
        ("started", "count"),
        ("progress", "count", 1, 1, "count 1"),
        ("finished", "count", StepOutcome.SUCCEEDED, {"count_count": 1, "count_saw": ["fetch"]}),
        (
            "result",
            AttemptOutcome.SUCCEEDED,
            {"fetch_count": 2, "fetch_saw": [], "count_count": 1, "count_saw": ["fetch"]},
            None,
        ),
    ]


async def test_skips_completed_steps_and_shows_their_outputs() -> None:
    reports = await _run(
        _registry(CountingStep("fetch"), CountingStep("count", 1)),
        completed={"fetch": {"fetched": 7}},
    )

    assert [r[:2] for r in reports if r[0] != "progress"] == [
        ("started", "count"),
        ("finished", "count"),
        ("result", AttemptOutcome.SUCCEEDED),
    ]
    assert reports[-1][2] == {"fetched": 7, "count_count": 1, "count_saw": ["fetch"]}


async def test_recalculate_runs_only_the_steps_it_names() -> None:
    spec = RecalculateSpec(("octo/repo",), steps=("count",))

    reports = await _run(_registry(CountingStep("fetch"), CountingStep("count", 1)), spec)

    assert [r[1] for r in reports if r[0] == "started"] == ["count"]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TransientError("rate limited"), AttemptError("TRANSIENT", "rate limited", True)),
        (PermanentError("gone", code="NOT_FOUND"), AttemptError("NOT_FOUND", "gone", False)),
        (StepFailed("odd", retryable=True, code="ODD"), AttemptError("ODD", "odd", True)),
    ],
)
async def test_step_failed_keeps_its_code_and_retryability(
    error: StepFailed, expected: AttemptError
) -> None:
    reports = await _run(_registry(RaisingStep("fetch", error), CountingStep("count")))

    assert reports == [
        ("started", "fetch"),
        ("finished", "fetch", StepOutcome.FAILED, None),
        ("result", AttemptOutcome.FAILED, None, expected),
    ]


async def test_unexpected_error_is_internal_and_not_retryable() -> None:
    reports = await _run(_registry(RaisingStep("fetch", KeyError("missing"))))

    error = reports[-1][3]
    assert (error.code, error.retryable) == ("INTERNAL", False)
    assert "KeyError" in error.message


async def test_unknown_job() -> None:
    reports = await _run(JobRegistry())

    [(kind, outcome, output, error)] = reports
    assert (kind, outcome, output) == ("result", AttemptOutcome.FAILED, None)
    assert (error.code, error.retryable) == ("UNKNOWN_JOB", False)


async def test_plugin_job_runs_the_job_registered_under_its_name() -> None:
    registry = _registry(CountingStep("fetch"))
    registry.register(Job("report.weekly", [CountingStep("report", 1)]))

    reports = await _run(registry, spec=PluginJobSpec("report.weekly", {"week": 3}))

    assert [r[1] for r in reports if r[0] == "started"] == ["report"]
    assert reports[-1][:2] == ("result", AttemptOutcome.SUCCEEDED)
    assert registry.kinds == ["crawl", "recalculate", "report.weekly"]


async def test_plugin_job_this_crawler_lacks_fails_for_good() -> None:
    reports = await _run(_registry(CountingStep("fetch")), spec=PluginJobSpec("absent"))

    [(_, outcome, _, error)] = reports
    assert outcome is AttemptOutcome.FAILED
    assert (error.code, error.retryable) == ("UNKNOWN_JOB", False)
    assert "'absent'" in error.message and "GHPULSE_CRAWLER_PLUGINS" in error.message


@pytest.mark.parametrize("name", ["", "Noop", "plugin", "has space"])
def test_registry_refuses_names_no_run_can_carry(name: str) -> None:
    with pytest.raises(ValueError, match="not a plugin job name"):
        JobRegistry().register(Job(name, []))


def test_registry_replaces_built_in_jobs() -> None:
    registry = _registry(CountingStep("fetch"))
    replacement = Job(JobKind.CRAWL, [CountingStep("other")])
    registry.register(replacement)

    assert registry.get("crawl") is replacement


def _readme_plugin() -> ModuleType:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- plugin-example:start -->")[1].split("<!-- plugin-example:end -->")[0]
    code = block.split("```python\n")[1].split("```")[0]
    module = ModuleType("readme_plugin")
    exec(compile(code, "README.md", "exec"), module.__dict__)
    return module


async def test_the_readme_plugin_example_loads_and_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "readme_plugin", _readme_plugin())
    registry = JobRegistry()
    load_plugins(registry, "readme_plugin:register")

    counted = await _run(registry, spec=PluginJobSpec("count", {"n": 2}))
    refused = await _run(registry, spec=PluginJobSpec("count", {"n": -1}))

    assert registry.kinds == ["count"]
    assert counted[-1] == ("result", AttemptOutcome.SUCCEEDED, {"counted": 2}, None)
    assert (refused[-1][1], refused[-1][3].retryable) == (AttemptOutcome.FAILED, False)


async def test_missing_job_is_unknown() -> None:
    reports = await _run(_registry(CountingStep("fetch")), spec=None)

    assert reports[-1][3].code == "UNKNOWN_JOB"


async def test_cancel_at_a_safe_point() -> None:
    signal = StopSignal()
    step = StoppingStep("fetch", signal, StopReason.CANCEL)

    reports = await _run(_registry(step, CountingStep("count")), signal=signal)

    assert reports == [
        ("started", "fetch"),
        ("finished", "fetch", StepOutcome.CANCELLED, None),
        ("result", AttemptOutcome.CANCELLED, None, None),
    ]


async def test_drain_releases_without_finishing_the_step() -> None:
    signal = StopSignal()
    step = StoppingStep("fetch", signal, StopReason.DRAIN)

    reports = await _run(_registry(step, CountingStep("count")), signal=signal)

    assert reports == [("started", "fetch"), ("result", AttemptOutcome.RELEASED, None, None)]


async def test_stop_between_steps() -> None:
    signal = StopSignal()
    signal.request(StopReason.CANCEL)

    reports = await _run(_registry(CountingStep("fetch")), signal=signal)

    assert reports == [("result", AttemptOutcome.CANCELLED, None, None)]


def test_first_stop_reason_wins() -> None:
    signal = StopSignal()
    signal.request(StopReason.CANCEL)
    signal.request(StopReason.DRAIN)

    assert signal.reason is StopReason.CANCEL
    assert signal.event.is_set()


async def test_abandon_cancels_without_reports() -> None:
    gate = asyncio.Event()

    @dataclass
    class Blocking:
        name: str = "fetch"

        async def run(self, ctx: StepContext) -> Output:
            await gate.wait()
            return {}

    recorder = Recorder()
    runner = AttemptRunner(_registry(Blocking()), KEY, SPEC, {}, recorder, StopSignal())
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.reports == [("started", "fetch")]


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        (OperationalError("SELECT 1", {}, Exception("database is locked")), "TRANSIENT", True),
        (httpx.ConnectError("refused"), "TRANSIENT", True),
        (ConnectionResetError("reset"), "TRANSIENT", True),
        (TimeoutError(), "TRANSIENT", True),
        (UnknownJob(kind="crawl"), "UNKNOWN_JOB", False),
        (ValueError("bad"), "INTERNAL", False),
    ],
)
def test_attempt_error(error: BaseException, code: str, retryable: bool) -> None:
    classified = attempt_error(error)

    assert (classified.code, classified.retryable) == (code, retryable)
    assert classified.message


async def test_log_context_carries_run_attempt_and_step() -> None:
    seen: dict[str, Any] = {}

    @dataclass
    class Peeking:
        name: str = "fetch"

        async def run(self, ctx: StepContext) -> Output:
            seen.update(structlog.contextvars.get_contextvars())
            return {}

    # In its own task, as the worker runs it, so the bound context stays with the attempt.
    await asyncio.create_task(_run(_registry(Peeking())))

    assert seen == {"run_id": "run-1", "attempt": 1, "step": "fetch"}
    assert structlog.contextvars.get_contextvars() == {}
