"""Fixtures shared by every tier."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import postgres


@pytest.fixture(scope="session")
def pg_available() -> None:
    """Skip (or, under CI=true, fail) when PostgreSQL is unreachable."""
    problem = postgres.reachable()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the PostgreSQL tests: {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="session")
def scheduler_pg_template(pg_available: None) -> Iterator[str]:
    from scheduler_service.db.migrations import upgrade

    with postgres.template("ghp_sched", upgrade) as name:
        yield name


@pytest.fixture(params=postgres.BACKENDS)
def scheduler_db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A migrated, empty run-store database: a temporary SQLite file, then PostgreSQL."""
    from scheduler_service.db.migrations import upgrade

    with postgres.migrated(request, tmp_path, "scheduler", upgrade, "scheduler_pg_template") as url:
        yield url
