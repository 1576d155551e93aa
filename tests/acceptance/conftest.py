"""Real processes: a scheduler and crawlers, started with the `ghpulse` command."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import Service, free_port

FAST = {
    "GHPULSE_HEARTBEAT_INTERVAL": "0.2",
    "GHPULSE_RECONNECT_GRACE": "0.5",
    "GHPULSE_SWEEP_INTERVAL": "0.1",
    "GHPULSE_RETRY_BACKOFF": "0.05",
    "GHPULSE_SHUTDOWN_GRACE": "1",
    "GHPULSE_RECONNECT_BACKOFF": "0.05",
    "GHPULSE_RECONNECT_BACKOFF_MAX": "0.3",
}


class Processes:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.scheduler_port = free_port()
        self.gates = tmp / "gates"
        self.gates.mkdir()
        self.started: list[Service] = []

    @property
    def scheduler_addr(self) -> str:
        return f"127.0.0.1:{self.scheduler_port}"

    def scheduler(self, **env: str) -> Service:
        values = {
            **FAST,
            "GHPULSE_SCHEDULER_LISTEN": self.scheduler_addr,
            "GHPULSE_SCHEDULER_DB": f"sqlite:///{self.tmp}/scheduler.db",
            **env,
        }
        return self._start("scheduler", self.scheduler_addr, values)

    def crawler(self, name: str, **env: str) -> Service:
        address = f"127.0.0.1:{free_port()}"
        values = {
            **FAST,
            "GHPULSE_CRAWLER_LISTEN": address,
            "GHPULSE_CRAWLER_ID": name,
            "GHPULSE_SCHEDULER_ADDR": self.scheduler_addr,
            "GHPULSE_CRAWLER_DB": f"sqlite:///{self.tmp}/crawler.db",
            "GHPULSE_EXPORT_DIR": str(self.tmp / "exports"),
            "GHPULSE_GITHUB_API_URL": "http://127.0.0.1:9",
            "GHPULSE_CRAWLER_PLUGINS": "tests.support.jobs:register",
            "GHPULSE_TEST_GATES": str(self.gates),
            **env,
        }
        return self._start("crawler", address, values)

    def _start(self, command: str, address: str, env: dict[str, str]) -> Service:
        service = Service(command, address, env, self.tmp / f"{command}-{len(self.started)}.log")
        self.started.append(service)
        return service.start()

    def open_gate(self, run_id: str) -> None:
        (self.gates / run_id).touch()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    yield running
    for service in reversed(running.started):
        service.kill()


ServiceFactory = Callable[..., Service]
