"""Users' import paths: the public face (`ghpulse`) and the paths of before it (`common.client`,
`common.jobs`, and `crawler_service.jobs` for plugins) name the same objects, and each path imports
on its own in a fresh interpreter (no import cycle hidden by what the test session loaded first)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import common.client
import common.jobs
import crawler_service.jobs
import crawler_service.jobs.registry
import ghpulse

IMPORTS = [
    "from ghpulse import GhpulseClient, SyncGhpulseClient, CrawlSpec",
    "from common.client import GhpulseClient, SyncGhpulseClient",
    "from common.jobs import CrawlSpec",
    "from crawler_service.jobs import Job, JobRegistry, Output, Step, StepContext",
]


@pytest.mark.parametrize("statement", IMPORTS)
def test_path_imports_in_a_fresh_interpreter(statement: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", statement], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_client_paths_name_the_same_objects() -> None:
    assert ghpulse.GhpulseClient is common.client.GhpulseClient
    assert ghpulse.SyncGhpulseClient is common.client.SyncGhpulseClient
    assert ghpulse.CrawlSpec is common.jobs.CrawlSpec


def test_every_public_name_is_the_one_of_its_old_path() -> None:
    old = {**vars(common.jobs), **vars(common.client)}
    differing = [
        name for name in ghpulse.__all__ if name in old and old[name] is not getattr(ghpulse, name)
    ]
    assert differing == []


def test_plugin_interface_is_the_registry_one() -> None:
    for name in ("Job", "JobRegistry", "Output", "Step", "StepContext"):
        assert getattr(crawler_service.jobs, name) is getattr(crawler_service.jobs.registry, name)
