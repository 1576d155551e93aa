"""The schedule firings counter is served on the scheduler's metrics endpoint."""

from __future__ import annotations

from pathlib import Path

import httpx

from scheduler_service.app import SchedulerApp
from tests.support.cluster import scheduler_settings
from tests.support.processes import free_port


async def test_schedule_firings_are_on_the_metrics_endpoint(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    app = SchedulerApp(scheduler_settings(tmp_path, metrics_listen=listen))
    async with app, httpx.AsyncClient() as http:
        page = (await http.get(f"http://{listen}/metrics")).text
    assert "# TYPE ghpulse_schedule_firings_total counter" in page
    assert "ghpulse_queue_depth" in page
