"""Following a gated test run (tests/support/jobs.py) through the typed client's watch, which
reconnects to another replica when its stream breaks: every message kept, and an event set once
step beta (the gated one) runs."""

from __future__ import annotations

import asyncio

from common.client.aio import GhpulseClient
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb


def beta_started(message: spb.WatchRunResponse) -> bool:
    """Whether `message` shows step beta running (a snapshot) or starting (an event)."""
    if message.HasField("snapshot"):
        return any(
            step.name == "beta" and step.state == runs_pb2.STEP_STATE_RUNNING
            for step in message.snapshot.steps
        )
    return message.event.step_started.step == "beta"


async def follow(
    client: GhpulseClient, run_id: str, seen: list[spb.WatchRunResponse], beta: asyncio.Event
) -> None:
    """Watch the run to its end, appending every message to `seen`; set `beta` once it runs."""
    async for message in client.watch(run_id):
        seen.append(message)
        if beta_started(message):
            beta.set()
