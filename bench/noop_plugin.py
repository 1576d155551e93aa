"""A one-step job that does nothing: the smallest crawler plugin, and the benchmarks' job.

    GHPULSE_CRAWLER_PLUGINS=bench.noop_plugin:register   # from the repository root
    GHPULSE_CRAWLER_PLUGINS=noop_plugin:register         # with bench/ on PYTHONPATH

Runs of it are triggered with a `PluginJob` (`ghpulse trigger plugin noop`, or
`PluginJobSpec("noop")` from Python). Its one step, `noop`, returns at once; the run's output
echoes the job's params.
"""

from __future__ import annotations

from collections.abc import Mapping

from common.jobs import JobSpec, PluginJobSpec
from crawler_service.jobs import Job, JobRegistry, Output, StepContext

KIND = "noop"


class NoopStep:
    name = "noop"

    async def run(self, ctx: StepContext) -> Output:
        return {}


def summarize(spec: JobSpec, outputs: Mapping[str, Output]) -> Output:
    return {"params": dict(spec.params) if isinstance(spec, PluginJobSpec) else {}}


def register(registry: JobRegistry) -> None:
    """Add the `noop` job (GHPULSE_CRAWLER_PLUGINS calls this with the crawler's registry)."""
    registry.register(Job(KIND, [NoopStep()], summarize))
