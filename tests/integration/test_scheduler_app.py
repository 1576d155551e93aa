"""`SchedulerApp`'s lifecycle: a scheduler that fails to start (its port is taken) stops what it
had started: no dispatcher or sweep task left running, the run store closed; a scheduler that
stops closes its store only once its crawlers' streams have cleaned up."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from scheduler_service.app import SchedulerApp
from scheduler_service.cluster.registry import SqlWorkerRegistry
from tests.support.cluster import cluster, scheduler_settings


async def test_a_failed_start_leaves_nothing_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = SchedulerApp(scheduler_settings(tmp_path, listen=f"127.0.0.1:{port}"))
        with pytest.raises(RuntimeError, match="bind"):
            async with app:
                pass
    assert app._tasks and all(task.done() for task in app._tasks)
    with pytest.raises(RuntimeError):  # the store's threads were shut down
        await app.store.get_run("run_x")


async def test_stop_closes_the_store_after_the_streams_unregistered_their_crawlers(
    tmp_path: Path, scheduler_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gRPC's `stop` cancels the stream handlers without waiting for their clean-up. A registry
    call still running when the store closed returned its connection to the disposed pool, which
    never closes it: a psycopg `ResourceWarning` later, in whichever test the garbage collector
    ran (a stress loop's failure). Here the crawler's unregistration is held until the scheduler
    either waits for the streams or closes its store, whichever comes first."""
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    release = asyncio.Event()
    events: list[str] = []
    unregister = SqlWorkerRegistry.disconnected

    async def held(registry: SqlWorkerRegistry, worker_id: str, replica_id: str) -> None:
        await release.wait()
        await unregister(registry, worker_id, replica_id)
        events.append("unregistered")

    monkeypatch.setattr(SqlWorkerRegistry, "disconnected", held)
    async with cluster(tmp_path, db=scheduler_db_url) as running:
        await running.add_crawler()
        app = running.scheduler
        wait_streams, close_store = app.workers_api.closed, app.store.close

        async def streams_closed() -> None:
            release.set()
            await wait_streams()

        async def store_closed() -> None:
            events.append("store closed")
            release.set()
            await close_store()

        monkeypatch.setattr(app.workers_api, "closed", streams_closed)
        monkeypatch.setattr(app.store, "close", store_closed)
    assert events == ["unregistered", "store closed"]
