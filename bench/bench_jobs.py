"""The benchmark-only job `ticks`, loaded into a crawler with
GHPULSE_CRAWLER_PLUGINS=bench_jobs:register (with `bench/` on PYTHONPATH), beside the `noop` job
of `noop_plugin.py`.

`PluginJob{kind: "ticks", params: {ticks: n}}`: one step that waits for the gate file
`<GHPULSE_BENCH_GATES>/<run_id>`, then reports progress `n` times, 10 per second (the watcher
fan-out benchmark).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from common.jobs import PluginJobSpec
from crawler_service.jobs import Job, JobRegistry, Output, StepContext

GATES_ENV = "GHPULSE_BENCH_GATES"
KIND = "ticks"
TICK_INTERVAL = 0.1


def gate_path(run_id: str) -> Path:
    """The file whose existence lets a `ticks` run start reporting."""
    return Path(os.environ[GATES_ENV]) / run_id


class TicksStep:
    name = "ticks"

    async def run(self, ctx: StepContext) -> Output:
        spec = ctx.spec
        ticks = int(spec.params.get("ticks", 0)) if isinstance(spec, PluginJobSpec) else 0
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
    registry.register(Job(KIND, [TicksStep()]))
