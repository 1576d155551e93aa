"""Fake GitHub helpers: datasets, a server on a free port, and a clock that sleeps instantly.

Use the context managers directly, or the fixtures `fake_clock` and `fake_github`: the root
conftest lists this module in `pytest_plugins`, so any test can ask for them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ghpulse.testing.fake_github import SAMPLE_DIR, Dataset, FakeGitHub

ANTS_DIR = Path(__file__).resolve().parents[1] / "data" / "github-ants"
ANTS = "panjf2000/ants"
TOKEN = "ghp_TestTokenThatMustNeverLeak0123456789"


@functools.cache
def _loaded(path: Path) -> Dataset:
    return Dataset.load(path)


def sample_dataset() -> Dataset:
    """A private copy of the bundled sample (`ghpulse-demo/{api,web,infra,legacy}`)."""
    return _loaded(SAMPLE_DIR).copy()


def ants_dataset() -> Dataset:
    """A private copy of the recorded panjf2000/ants data."""
    return _loaded(ANTS_DIR).copy()


@contextmanager
def serve(dataset: Dataset | None = None, **options: Any) -> Iterator[FakeGitHub]:
    """Serve `dataset` (default: the sample) on a free port until the block ends."""
    with FakeGitHub(dataset if dataset is not None else sample_dataset(), **options) as fake:
        yield fake


class FakeClock:
    """A clock for client and fake alike: `sleep` returns at once and moves time forward."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        #: Every delay requested, in order.
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fresh `FakeClock`."""
    return FakeClock()


@pytest.fixture
def fake_github(fake_clock: FakeClock) -> Iterator[FakeGitHub]:
    """The sample dataset served on a free port, its rate-limit reset driven by `fake_clock`."""
    with serve(clock=fake_clock) as fake:
        yield fake
