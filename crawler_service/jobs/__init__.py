"""The crawler's jobs: the step interface and registry (`registry`), the built-in jobs
(`pipeline`) and their steps (`steps/`). Plugins import the interface from here and register
their jobs under their own names, run by `PluginJobSpec(kind=<name>)` runs (README, "Writing a
plugin"):

    from crawler_service.jobs import Job, JobRegistry, Output, Step, StepContext

    def register(registry: JobRegistry) -> None:
        registry.register(Job("noop", [NoopStep()]))
"""

from __future__ import annotations

from crawler_service.jobs.registry import Job, JobRegistry, Output, Step, StepContext

__all__ = ["Job", "JobRegistry", "Output", "Step", "StepContext"]
