"""A fake GitHub REST API for tests, the demo and benchmarks (see `server.FakeGitHub`)."""

from __future__ import annotations

from pathlib import Path

from ghpulse.testing.fake_github.accounts import Account, account
from ghpulse.testing.fake_github.dataset import Dataset, RepoData
from ghpulse.testing.fake_github.faults import Fault, FaultKind, Faults, RateBudget
from ghpulse.testing.fake_github.server import FakeGitHub, RequestRecord

#: The bundled sample dataset: organization `ghpulse-demo` (used by `ghpulse demo`).
SAMPLE_DIR = Path(__file__).parent / "sample"

__all__ = [
    "SAMPLE_DIR",
    "Account",
    "Dataset",
    "FakeGitHub",
    "Fault",
    "FaultKind",
    "Faults",
    "RateBudget",
    "RepoData",
    "RequestRecord",
    "account",
]
