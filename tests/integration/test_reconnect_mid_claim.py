"""Issue 15: a crawler that reconnects while a run is being claimed for it gets that run on its new
stream, as the same attempt: not left RUNNING on nobody until its lease expires, using up an
attempt. A real scheduler on a real port, a real crawler worker connection."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from common.proto.ghpulse.v1 import runs_pb2
from scheduler_service.orchestration.dispatch import WorkerConn
from scheduler_service.runs.store import Created
from tests.support.cluster import cluster

WORKER = "crawler-1"


async def test_a_crawler_reconnecting_mid_claim_runs_the_claimed_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(tmp_path) as c:
        await c.add_crawler(WORKER, slots=1)
        orchestrator = c.scheduler.orchestrator
        store, dispatcher = orchestrator.store, orchestrator.dispatcher
        first = dispatcher.get(WORKER)
        assert first is not None
        entered, resume = asyncio.Event(), asyncio.Event()
        create_run = store.create_run

        async def claim_after_reconnect(*args: Any, **kwargs: Any) -> Created:
            # The trigger has reserved a slot of the first stream; its claim commits only once
            # the crawler is back on a second one.
            entered.set()
            await resume.wait()
            return await create_run(*args, **kwargs)

        monkeypatch.setattr(store, "create_run", claim_after_reconnect)
        reconnected = asyncio.Event()
        add = dispatcher.add

        def added(conn: WorkerConn) -> None:
            add(conn)
            if conn is not first:
                reconnected.set()

        monkeypatch.setattr(dispatcher, "add", added)
        trigger = asyncio.create_task(c.trigger("test/gated"))
        await entered.wait()
        first.close()  # the scheduler ends the stream: the crawler reconnects
        await reconnected.wait()
        resume.set()
        run = (await trigger).run

        await c.wait_for_step(run.id, "beta")
        c.open_gate(run.id)
        done = await c.wait_for_state(
            run.id, runs_pb2.RUN_STATE_SUCCEEDED, runs_pb2.RUN_STATE_FAILED
        )
        assert done.state == runs_pb2.RUN_STATE_SUCCEEDED
        assert done.attempt == 1  # before the fix: 2, after the first attempt's lease expired
