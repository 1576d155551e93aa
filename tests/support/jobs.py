"""Test-only jobs, loaded into a crawler with GHPULSE_CRAWLER_PLUGINS=tests.support.jobs:register.

They replace the `crawl` job with three steps (alpha, beta, gamma) that report progress and whose
behaviour the test chooses through the crawl's first repository name:
- `test/gated` (or `test/gated-<anything>`): beta waits until the file
  `<GHPULSE_TEST_GATES>/<run_id>` exists;
- `test/fail-once`: beta fails retryably on the first attempt;
- `test/fail`: beta fails permanently;
- anything else: all steps run straight through.
Each step's output records the attempt that ran it, so tests can tell which steps were skipped.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from common.jobs import CrawlSpec, JobKind
from crawler_service.errors import PermanentError, TransientError
from crawler_service.jobs.registry import Job, JobRegistry, Output, StepContext

GATES_ENV = "GHPULSE_TEST_GATES"
STEPS = ("alpha", "beta", "gamma")


def _mode(ctx: StepContext) -> str:
    spec = ctx.spec
    return spec.repositories[0] if isinstance(spec, CrawlSpec) and spec.repositories else ""


def gate_path(run_id: str) -> Path:
    return Path(os.environ[GATES_ENV]) / run_id


class TestStep:
    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, ctx: StepContext) -> Output:
        mode = _mode(ctx)
        await ctx.progress(0, 2, f"{self.name} starting")
        if self.name == "beta":
            await self._beta(ctx, mode)
        await ctx.progress(1, 2, f"{self.name} halfway")
        await ctx.progress(2, 2, f"{self.name} done")
        return {"ran_in_attempt": ctx.attempt, "previous": sorted(ctx.outputs)}

    async def _beta(self, ctx: StepContext, mode: str) -> None:
        if mode == "test/fail":
            raise PermanentError("beta always fails", code="TEST_PERMANENT")
        if mode == "test/fail-once" and ctx.attempt == 1:
            raise TransientError("beta fails on the first attempt", code="TEST_TRANSIENT")
        if mode == "test/gated" or mode.startswith("test/gated-"):
            # Test-only polling: the gate is opened by the test process, possibly another process.
            while not gate_path(ctx.run_id).exists():
                ctx.check_stopped()
                await asyncio.sleep(0.01)


def register(registry: JobRegistry) -> None:
    registry.register(Job(JobKind.CRAWL, [TestStep(name) for name in STEPS]))
