"""compose.yaml's topology, started as real processes on this machine: PostgreSQL (a fresh
database), the offline profile's fake GitHub, both `ghpulse scheduler` replicas and the three
`ghpulse crawler`s, with the environments compose.yaml gives them (tests/support/compose.py maps
the hostnames, ports, secrets and volumes). A crawl triggered through one replica is watched
through the other, and its data is read from a crawler's PullRequestService."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.auth.credentials import ClientCredentials
from common.client.aio import GhpulseClient
from common.jobs import CrawlSpec
from common.proto.ghpulse.v1 import runs_pb2
from tests.support import postgres
from tests.support.compose import COMPOSE, Compose, ComposeService, LocalTopology
from tests.support.compose_tool import docker_compose
from tests.support.processes import BIN, ROOT, Service

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
WAIT = 60.0
REPOSITORIES = ("ghpulse-demo/api", "ghpulse-demo/web")
#: What the shell running `docker compose --profile offline up` sets (compose.yaml's header).
OFFLINE = {"GHPULSE_GITHUB_API_URL": "http://fake-github:8080"}


def test_docker_compose_config_accepts_the_file() -> None:
    """The real `docker-compose config` (the PyPI package; no Docker engine needed)."""
    try:
        executable = docker_compose()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"docker-compose could not be installed from PyPI: {error}")
    command = [str(executable), "-f", str(COMPOSE), "--profile", "offline", "config", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def pg_url(pg_available: None) -> Iterator[str]:
    with postgres.fresh("ghp_compose_acc") as url:
        yield url


def _create_token(topology: LocalTopology, name: str, scope: str) -> str:
    """`ghpulse tokens create` as compose.yaml's header says; the token, also written to the
    secret file compose.yaml reads for `name` (if any)."""
    tokens_file = topology.secret_path("ghpulse_tokens")
    tokens_file.parent.mkdir(parents=True, exist_ok=True)
    command = [str(BIN / "ghpulse"), "tokens", "create", name, "--scope", scope]
    out = subprocess.run(
        [*command, "--file", str(tokens_file)], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def _start_fake_github(topology: LocalTopology, service: ComposeService) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ghpulse.testing.fake_github", *topology.arguments(service)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    process.stdout.readline()  # the base URL, printed once listening
    return process


def _start(
    topology: LocalTopology, services: list[ComposeService], listen_var: str, started: list[Service]
) -> None:
    """Launch `services` together (as compose does), then wait until each serves."""
    launched = []
    for service in services:
        env = topology.environment(service)
        log = topology.tmp / f"{service.name}.log"
        launched.append(Service(service.command[0], env[listen_var], env, log).launch())
        started.append(launched[-1])
    for running in launched:
        running.wait_ready()


async def _wait_for_workers(client: GhpulseClient, count: int) -> list[tuple[str, str]]:
    deadline = time.monotonic() + WAIT
    while True:
        workers = (await client.workers()).workers
        if len(workers) == count or time.monotonic() > deadline:
            return [(w.id, w.replica_id) for w in workers]
        await asyncio.sleep(0.1)


@pytest.mark.timeout(600)  # six processes starting on a loaded machine
def test_compose_topology_crawls_through_any_replica(tmp_path: Path, pg_url: str) -> None:
    compose = Compose.load()
    topology = LocalTopology(compose, tmp_path, pg_url, OFFLINE)
    schedulers, crawlers = compose.running("scheduler"), compose.running("crawler")
    assert (len(schedulers), len(crawlers)) == (2, 3)
    admin = _create_token(topology, "admin", "admin")
    crawler_token = _create_token(topology, "crawlers", "worker")
    topology.secret_path("ghpulse_crawler_token").write_text(crawler_token + "\n")
    started: list[Service] = []
    github = _start_fake_github(topology, compose.services["fake-github"])
    try:
        # Crawlers depend on the schedulers being healthy (compose.yaml's depends_on).
        _start(topology, schedulers, "GHPULSE_SCHEDULER_LISTEN", started)
        _start(topology, crawlers, "GHPULSE_CRAWLER_LISTEN", started)
        asyncio.run(_crawl(topology, schedulers, crawlers, admin))
        _cli_reaches_both_replicas(topology, schedulers, admin)
    finally:
        for service in reversed(started):
            service.stop()
        github.terminate()
        github.wait(10)
        assert github.stdout is not None
        github.stdout.close()


def _cli_reaches_both_replicas(
    topology: LocalTopology, schedulers: list[ComposeService], token: str
) -> None:
    """The CLI, pointed at both replicas as compose.yaml's header says (`ipv4:A,B`)."""
    target = "ipv4:" + ",".join(topology.address(s.name, 50051) for s in schedulers)
    env = {**os.environ, "GHPULSE_SCHEDULER_ADDR": target, "GHPULSE_TOKEN": token}
    for _ in schedulers:  # round-robin: the calls go to both replicas
        out = subprocess.run(
            [str(BIN / "ghpulse"), "workers", "--output", "json"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert len(json.loads(out.stdout)["workers"]) == 3


async def _crawl(
    topology: LocalTopology,
    schedulers: list[ComposeService],
    crawlers: list[ComposeService],
    token: str,
) -> None:
    first, second = (topology.address(s.name, 50051) for s in schedulers)
    query = topology.address(crawlers[-1].name, 50052)
    credentials = ClientCredentials(token=token)
    async with (
        GhpulseClient(first, credentials=credentials) as via_first,
        GhpulseClient(second, query, credentials=credentials) as via_second,
    ):
        workers = await _wait_for_workers(via_second, len(crawlers))
        assert sorted(worker for worker, _ in workers) == [
            f"crawlers/{s.environment['GHPULSE_CRAWLER_ID']}" for s in crawlers
        ]
        assert {replica for _, replica in workers} <= {
            s.environment["GHPULSE_SCHEDULER_ID"] for s in schedulers
        }
        triggered = await via_first.trigger(CrawlSpec(REPOSITORIES))
        final = await via_second.wait(triggered.run_id)
        assert final.state == runs_pb2.RUN_STATE_SUCCEEDED, final.error
        for repository in REPOSITORIES:
            stats = await via_second.repository_stats(repository)
            assert stats.total > 0
        page = await via_second.list_pull_requests(REPOSITORIES[1])
        assert page.pull_requests
