"""The processes under benchmark: `ghpulse scheduler` and `ghpulse crawler`, started the way the
README starts them, on free ports, with SQLite databases in a temporary directory."""

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

from common.proto.ghpulse.v1 import scheduler_service_pb2 as sched_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2_grpc as sched_grpc

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by `pid` (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); the split starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0
            )
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


class Service:
    """`ghpulse <command>` as a subprocess (its output goes to `<tmp>/<command>.log`)."""

    def __init__(self, command: str, address: str, env: dict[str, str], tmp: Path) -> None:
        self.command = command
        self.address = address
        self.env = {**os.environ, "GHPULSE_LOG_FORMAT": "json", **env}
        self.log = tmp / f"{command}.log"
        self.tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, *args: str) -> Service:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [str(BIN / "ghpulse"), self.command, *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ghpulse {self.command} exited: {self.log.read_text()[-2000:]}")
            if _serving(self.address):
                return self
            time.sleep(0.05)
        raise TimeoutError(f"ghpulse {self.command} not serving on {self.address}")

    def stop(self) -> None:
        """SIGTERM (graceful shutdown) and wait."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def start_scheduler(tmp: Path, log_level: str) -> Service:
    """Migrate a fresh SQLite database, then start the scheduler on it with `--no-migrate`."""
    url = f"sqlite:///{tmp}/scheduler.db"
    env = {"GHPULSE_SCHEDULER_DB": url, "GHPULSE_LOG_LEVEL": log_level}
    subprocess.run(
        [str(BIN / "ghpulse"), "migrate", "scheduler"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        cwd=tmp,
    )
    address = f"127.0.0.1:{free_port()}"
    return Service("scheduler", address, {**env, "GHPULSE_SCHEDULER_LISTEN": address}, tmp).start(
        "--no-migrate"
    )


def start_crawler(tmp: Path, scheduler_addr: str, gates: Path, log_level: str) -> Service:
    """A crawler running only the benchmark jobs, connected to the scheduler."""
    address = f"127.0.0.1:{free_port()}"
    env = {
        "GHPULSE_CRAWLER_LISTEN": address,
        "GHPULSE_CRAWLER_DB": f"sqlite:///{tmp}/crawler.db",
        "GHPULSE_SCHEDULER_ADDR": scheduler_addr,
        "GHPULSE_CRAWLER_PLUGINS": "noop_plugin:register,bench_jobs:register",
        "GHPULSE_CRAWLER_ID": "bench-crawler",
        "GHPULSE_BENCH_GATES": str(gates),
        "GHPULSE_LOG_LEVEL": log_level,
        "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)]),
    }
    crawler = Service("crawler", address, env, tmp).start()
    _wait_connected(scheduler_addr, "bench-crawler")
    return crawler


def _wait_connected(scheduler_addr: str, worker_id: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    with grpc.insecure_channel(scheduler_addr) as channel:
        stub = sched_grpc.SchedulerServiceStub(channel)
        while time.monotonic() < deadline:
            workers = stub.ListWorkers(sched_pb2.ListWorkersRequest(), timeout=5).workers
            if any(w.id == worker_id for w in workers):
                return
            time.sleep(0.05)
    raise TimeoutError(f"crawler {worker_id} never connected")
