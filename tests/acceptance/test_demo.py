"""`ghpulse demo`, exactly as the README runs it: offline, to completion, with the stats table."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import BIN

pytestmark = pytest.mark.slow


def test_demo_crawls_the_sample_and_prints_the_table(tmp_path: Path) -> None:
    # No proxy and an unusable token: the demo must neither need the network nor send a token.
    env = {
        **os.environ,
        "GITHUB_TOKEN": "ghp_must_not_be_used",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [str(BIN / "ghpulse"), "demo", "--dir", str(tmp_path / "demo")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "succeeded" in out
    # The demo's dummy token takes the GraphQL path, behind the free REST probe.
    assert re.search(r"GitHub: \d+ REST requests .*, [1-9]\d* GraphQL queries \(\d+ points\)", out)
    assert "Pull requests by repository" in out
    for repository in ("ghpulse-demo/api", "ghpulse-demo/infra", "ghpulse-demo/web"):
        assert repository in out
    assert "ghpulse-demo/legacy" not in out, "the archived repository is not crawled"
    for phase in ("CODING", "PICKUP", "REVIEW", "DEPLOY"):
        assert f"{phase} p50/p90" in out
    assert (tmp_path / "demo" / "crawler.db").exists()
    assert result.stderr == ""


def test_demo_leaves_nothing_behind_in_a_temporary_directory(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [str(BIN / "ghpulse"), "demo"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []
