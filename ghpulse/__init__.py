"""ghpulse: crawl GitHub pull requests on demand and on a schedule.

This package is the composition root (the `ghpulse` CLI, `ghpulse demo`/`up`, the fake GitHub in
`ghpulse.testing`) and the face Python users import:

    from ghpulse import GhpulseClient, CrawlSpec

    async with GhpulseClient() as client:
        triggered = await client.trigger(CrawlSpec(("octo/hello",)))
"""

from __future__ import annotations

from common.client import (
    GhpulseClient,
    RunView,
    StepView,
    SyncGhpulseClient,
    Triggered,
    follow_run,
)
from common.jobs import (
    BackfillLinksSpec,
    CrawlSpec,
    JobKind,
    JobSpec,
    PluginJobSpec,
    RecalculateSpec,
)

__all__ = [
    "BackfillLinksSpec",
    "CrawlSpec",
    "GhpulseClient",
    "JobKind",
    "JobSpec",
    "PluginJobSpec",
    "RecalculateSpec",
    "RunView",
    "StepView",
    "SyncGhpulseClient",
    "Triggered",
    "follow_run",
]
