"""Benchmark-only jobs, loaded into a crawler with GHPULSE_CRAWLER_PLUGINS=bench_jobs:register
(with `bench/` on PYTHONPATH). They replace the `crawl` job so the crawl pipeline never runs.

The crawl's first repository chooses the behaviour:
- `bench/ticks-<n>`: one step that waits for the gate file `<GHPULSE_BENCH_GATES>/<run_id>`, then
  reports progress `n` times, 10 per second (the watcher fan-out benchmark);
- anything else: two steps that finish at once (dispatch latency).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from common.jobs import CrawlSpec, JobKind
from crawler_service.jobs.registry import Job, JobRegistry, Output, StepContext

GATES_ENV = "GHPULSE_BENCH_GATES"
TICKS_PREFIX = "bench/ticks-"
TICK_INTERVAL = 0.1


def gate_path(run_id: str) -> Path:
    """The file whose existence lets a `ticks` run start reporting."""
    return Path(os.environ[GATES_ENV]) / run_id


def _ticks(ctx: StepContext) -> int:
    spec = ctx.spec
    if isinstance(spec, CrawlSpec) and spec.repositories:
        name = spec.repositories[0]
        if name.startswith(TICKS_PREFIX):
            return int(name.removeprefix(TICKS_PREFIX))
    return 0


class InstantStep:
    """Returns at once (a 'ticks' run does its work in the first step and skips this one's)."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, ctx: StepContext) -> Output:
        return {}


class TicksStep(InstantStep):
    async def run(self, ctx: StepContext) -> Output:
        ticks = _ticks(ctx)
        if not ticks:
            return {}
        # Bench-only polling: the gate is opened by the benchmark process once its watchers are in.
        while not gate_path(ctx.run_id).exists():
            ctx.check_stopped()
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for tick in range(1, ticks + 1):
            # Paced against the start time so the rate stays 10/s whatever each report costs.
            await asyncio.sleep(max(0.0, start + tick * TICK_INTERVAL - loop.time()))
            await ctx.progress(tick, ticks, "tick")
        return {"ticks": ticks}


def register(registry: JobRegistry) -> None:
    registry.register(Job(JobKind.CRAWL, [TicksStep("first"), InstantStep("second")]))
