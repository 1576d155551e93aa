"""The crawler's jobs: the step interface and registry (`registry`), the built-in jobs
(`pipeline`) and their steps (`steps/`). Plugins import the interface from here:

    from crawler_service.jobs import Job, JobRegistry, Output, Step, StepContext
"""

from __future__ import annotations

from crawler_service.jobs.registry import Job, JobRegistry, Output, Step, StepContext

__all__ = ["Job", "JobRegistry", "Output", "Step", "StepContext"]
