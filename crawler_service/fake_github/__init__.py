"""A fake GitHub REST API for tests, the demo and benchmarks (see `server.FakeGitHub`)."""

from __future__ import annotations

from crawler_service.fake_github.dataset import Dataset, RepoData
from crawler_service.fake_github.faults import Fault, FaultKind, Faults, RateBudget
from crawler_service.fake_github.server import FakeGitHub, RequestRecord

__all__ = [
    "Dataset",
    "FakeGitHub",
    "Fault",
    "FaultKind",
    "Faults",
    "RateBudget",
    "RepoData",
    "RequestRecord",
]
