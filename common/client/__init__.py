"""The typed ghpulse client: `GhpulseClient` (asyncio), `SyncGhpulseClient` (blocking), and the
watch helpers. Users import it as `from ghpulse import GhpulseClient`; this path keeps working."""

from __future__ import annotations

from common.client.aio import GhpulseClient, Triggered, build_trigger_request
from common.client.sync import SyncGhpulseClient
from common.client.watch import RunView, StepView, follow_run

__all__ = [
    "GhpulseClient",
    "RunView",
    "StepView",
    "SyncGhpulseClient",
    "Triggered",
    "build_trigger_request",
    "follow_run",
]
