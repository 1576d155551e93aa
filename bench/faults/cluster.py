"""The processes of one case: the fake GitHub (shared by the suite), a scheduler and crawlers
started as `ghpulse scheduler` / `ghpulse crawler`, on fresh SQLite files or fresh PostgreSQL
databases (reached through the suite's TCP proxy when the case cuts the database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import psycopg
from _procs import Service, free_port

T = TypeVar("T")
PG_ADMIN = os.environ.get("GHPULSE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_HOST, PG_PORT = "127.0.0.1", 5432
#: Timings short enough that a killed process is noticed within a second or two.
FAST = {
    "GHPULSE_HEARTBEAT_INTERVAL": "0.3",
    "GHPULSE_LEASE_TTL": "3",
    "GHPULSE_RECONNECT_GRACE": "2",
    "GHPULSE_SWEEP_INTERVAL": "0.2",
    "GHPULSE_RETRY_BACKOFF": "0.2",
    "GHPULSE_RETRY_BACKOFF_MAX": "2",
    "GHPULSE_SHUTDOWN_GRACE": "1",
    "GHPULSE_RECONNECT_BACKOFF": "0.05",
    "GHPULSE_RECONNECT_BACKOFF_MAX": "0.5",
    "GHPULSE_MAX_ATTEMPTS": "10",
    "GHPULSE_GITHUB_RETRY_BACKOFF": "0.2",
    "GHPULSE_GITHUB_SECONDARY_BACKOFF": "1",
    "GHPULSE_GITHUB_MAX_RETRIES": "6",
    "GHPULSE_DB_CONNECT_TIMEOUT": "3",
    "GHPULSE_DB_STATEMENT_TIMEOUT": "10",
    "GHPULSE_LOG_LEVEL": "warning",
}


class FakeGitHubProcess:
    """`python -m ghpulse.testing.fake_github` (the bundled sample) as a process; faults are
    scheduled through its control endpoint."""

    def __init__(self, tmp: Path, latency_ms: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            "--port",
            str(self.port),
            "--latency-ms",
            str(latency_ms),
            "--rate-limit",
            "1000000",
        ]
        with open(tmp / "fake_github.log", "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ghpulse.testing.fake_github", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/rate_limit", timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("the fake GitHub never answered")

    def control(self, method: str, body: Any = None) -> None:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/_fake/faults", data=data, method=method)
        request.add_header("content-type", "application/json")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


#: How long the suite's own connections wait for a PostgreSQL shared with other work to have a
#: free connection slot again ("too many clients"): the checker's luck is not the services' fault.
PG_SLOT_WAIT = 120.0


def while_pg_is_full(action: Callable[[], T]) -> T:
    """`action()`, retried while PostgreSQL refuses the connection for want of a free slot."""
    deadline = time.monotonic() + PG_SLOT_WAIT
    while True:
        try:
            return action()
        except Exception as exc:  # psycopg's own, or wrapped by SQLAlchemy
            if "too many clients" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _pg(sql: str) -> None:
    def run() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(cast(Any, sql))

    while_pg_is_full(run)


class Cluster:
    """One case's scheduler, crawlers and databases in `tmp` (`backend`: sqlite or postgresql)."""

    def __init__(self, tmp: Path, backend: str, github: str, pg_port: int = PG_PORT) -> None:
        self.tmp, self.backend, self.github = tmp, backend, github
        self.scheduler_addr = f"127.0.0.1:{free_port()}"
        self.exports = tmp / "exports"
        self.services: list[Service] = []
        self.scheduler: Service | None = None
        self.crawler: Service | None = None
        self._databases: list[str] = []
        self.scheduler_db = self._database("scheduler", pg_port)
        self.crawler_db = self._database("crawler", pg_port)
        self.crawler_db_direct = self._database_url("crawler", PG_PORT)

    def _database(self, role: str, port: int) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.tmp}/{role}.db"
        name = f"ghpulse_tf_{role}_{uuid.uuid4().hex[:10]}"
        _pg(f'CREATE DATABASE "{name}"')
        self._databases.append(name)
        return f"postgresql://postgres@{PG_HOST}:{port}/{name}"

    def _database_url(self, role: str, port: int) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.tmp}/{role}.db"
        name = next(n for n in self._databases if f"_{role}_" in n)
        return f"postgresql://postgres@{PG_HOST}:{port}/{name}"

    def start_scheduler(self) -> Service:
        env = {
            **FAST,
            "GHPULSE_SCHEDULER_LISTEN": self.scheduler_addr,
            "GHPULSE_SCHEDULER_DB": self.scheduler_db,
        }
        self.scheduler = self._start("scheduler", self.scheduler_addr, env)
        return self.scheduler

    def start_crawler(self, name: str) -> Service:
        address = f"127.0.0.1:{free_port()}"
        env = {
            **FAST,
            "GHPULSE_CRAWLER_LISTEN": address,
            "GHPULSE_CRAWLER_ID": name,
            "GHPULSE_SCHEDULER_ADDR": self.scheduler_addr,
            "GHPULSE_CRAWLER_DB": self.crawler_db,
            "GHPULSE_EXPORT_DIR": str(self.exports),
            "GHPULSE_GITHUB_API_URL": self.github,
            "GHPULSE_GITHUB_API": "rest",
        }
        self.crawler = self._start("crawler", address, env)
        return self.crawler

    def _start(self, command: str, address: str, env: dict[str, str]) -> Service:
        service = Service(command, address, env, self.tmp)
        self.services.append(service)
        return service.start()

    @staticmethod
    def kill(service: Service) -> None:
        """kill -9 of the process group: no clean-up at all, like a crash."""
        if service.process is not None and service.process.poll() is None:
            os.killpg(service.process.pid, 9)
            service.process.wait(10)

    def close(self) -> None:
        for service in reversed(self.services):
            self.kill(service)
        for name in self._databases:
            _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
