"""Real `ghpulse` processes, started the way the README starts them, on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def grpcurl() -> str:
    return str(BIN / "grpcurl")


def serving(address: str, timeout: float = 1.0) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


class Service:
    """`ghpulse <command>` as a subprocess; its output goes to `log`."""

    def __init__(self, command: str, address: str, env: dict[str, str], log: Path) -> None:
        self.command = command
        self.address = address
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "GHPULSE_LOG_FORMAT": "json", **env}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> Service:
        """Start the process without waiting for it to serve (then `wait_ready`)."""
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [str(BIN / "ghpulse"), self.command],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.log.parent,
                start_new_session=True,
            )
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"ghpulse {self.command} exited: {self.log.read_text()[-2000:]}")
            if serving(self.address):
                return
            time.sleep(0.05)
        raise TimeoutError(f"ghpulse {self.command} not serving on {self.address}")

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, like a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait (graceful shutdown); returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode


#: Timings short enough for tests (every process started here gets them).
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
    """A scheduler and crawlers started as `ghpulse` processes sharing one temporary directory,
    with fast timings and the test jobs; the `processes` fixture kills what it started."""

    def __init__(self, tmp: Path, scheduler_db: str | None = None) -> None:
        self.tmp = tmp
        #: The scheduler's database: a SQLite file in `tmp` unless given (e.g. PostgreSQL).
        self.scheduler_db = scheduler_db or f"sqlite:///{tmp}/scheduler.db"
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
            "GHPULSE_SCHEDULER_DB": self.scheduler_db,
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
