"""The README's Security examples (grpcurl with `-H 'authorization: Bearer …'`, `ghpulse tokens`,
`--token`), executed as written against a scheduler and a crawler started with a tokens file."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from common.auth import tokens
from tests.support.processes import BIN, ROOT, Processes, grpcurl

pytestmark = pytest.mark.slow


def security_cookbook() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- security-cookbook:start -->\n```sh\n(.*?)```\n<!-- security-cookbook:end -->",
        text,
        re.S,
    )
    assert block is not None, "the README lost its security-cookbook markers"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_every_security_example_works(processes: Processes, tmp_path: Path) -> None:
    auth_file = tmp_path / "tokens.json"
    admin = tokens.create(auth_file, "ops", ["admin"])
    crawler_token = tokens.create(auth_file, "crawlers", ["worker"])
    processes.scheduler(GHPULSE_AUTH_FILE=str(auth_file))
    crawler = processes.crawler(
        "secured", GHPULSE_AUTH_FILE=str(auth_file), GHPULSE_TOKEN=crawler_token
    )
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "GHPULSE_AUTH_FILE": str(auth_file),
        "GHPULSE_TOKEN": admin,
    }
    assert Path(grpcurl()).exists()
    for line in security_cookbook():
        command = line.replace("localhost:50051", processes.scheduler_addr).replace(
            "localhost:50052", crawler.address
        )
        result = subprocess.run(
            ["bash", "-c", command],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        if "/TriggerRun" in line:
            env["RUN_ID"] = re.findall(r'"id": "(run_[^"]+)"', result.stdout)[0]
        if "/ListWorkers" in line:
            assert '"crawlers/secured"' in result.stdout
        if "tokens create" in line:
            assert result.stdout.splitlines()[-1].startswith(tokens.PREFIX)
