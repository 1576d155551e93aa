"""`SchedulerApp` start-up: a scheduler that fails to start (its port is taken) stops what it had
started: no dispatcher or sweep task left running, the run store closed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from scheduler_service.app import SchedulerApp
from tests.support.cluster import scheduler_settings


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
