"""Every grpcurl command of the README's cookbook, executed as written against real processes
(a fake GitHub serving the bundled sample, a scheduler and a crawler running the real crawl)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ghpulse.testing.fake_github import SAMPLE_DIR
from tests.support.processes import BIN, ROOT, Processes, free_port, grpcurl

pytestmark = pytest.mark.slow
SAMPLE = SAMPLE_DIR


def cookbook() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- cookbook:start -->\n```sh\n(.*?)```\n<!-- cookbook:end -->", text, re.S
    )
    assert block is not None, "the README lost its cookbook markers"
    return [line for line in block.group(1).splitlines() if line.strip()]


@pytest.fixture
def fake_github(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ghpulse.testing.fake_github",
            "--data",
            str(SAMPLE),
            "--port",
            str(port),
            "--latency-ms",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()  # it prints its URL once it is listening
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()


def test_every_cookbook_command_works(processes: Processes, fake_github: str) -> None:
    processes.scheduler()
    crawler = processes.crawler(
        "cookbook", GHPULSE_GITHUB_API_URL=fake_github, GHPULSE_CRAWLER_PLUGINS=""
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    assert Path(grpcurl()).exists()
    for line in cookbook():
        command = line.replace("localhost:50051", processes.scheduler_addr).replace(
            "localhost:50052", crawler.address
        )
        result = subprocess.run(
            ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        if "/TriggerRun" in line:
            env["RUN_ID"] = json.loads(result.stdout)["run"]["id"]
        if "/WatchRun" in line:
            assert "RUN_STATE_SUCCEEDED" in result.stdout
        if "/ListPullRequests" in line:
            assert len(json.loads(result.stdout)["pull_requests"]) == 5
