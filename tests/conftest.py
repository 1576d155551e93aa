"""Fixtures shared by every tier: the PostgreSQL check and the databases (each a temporary SQLite
file, then a clone of a PostgreSQL template migrated once per session)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import postgres

# `fake_clock` and `fake_github`, for any test that asks for them.
pytest_plugins = ["tests.support.github"]


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Every test starts from structlog's defaults: a test that runs a CLI command in-process
    configures logging onto a stream its runner closes afterwards."""
    from common import logging as ghlog

    yield
    ghlog.reset()


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


@pytest.fixture(scope="session")
def crawler_pg_template(pg_available: None) -> Iterator[str]:
    from crawler_service.data.migrations import upgrade

    with postgres.template("ghp_crawl", upgrade) as name:
        yield name


@pytest.fixture(params=postgres.BACKENDS)
def crawler_db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A migrated, empty crawler database: a temporary SQLite file, then PostgreSQL."""
    from crawler_service.data.migrations import upgrade

    with postgres.migrated(request, tmp_path, "crawler", upgrade, "crawler_pg_template") as url:
        yield url


def _migrate_and_seed(url: str) -> None:
    from crawler_service.data.migrations import upgrade
    from tests.support.query_data import seed

    upgrade(url)
    seed(url)


@pytest.fixture(scope="session")
def seeded_pg_template(pg_available: None) -> Iterator[str]:
    with postgres.template("ghp_query", _migrate_and_seed) as name:
        yield name


@pytest.fixture(params=postgres.BACKENDS)
def seeded_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A crawler database holding the query tests' data set (`tests.support.query_data.seed`):
    a temporary SQLite file, then PostgreSQL."""
    with postgres.migrated(
        request, tmp_path, "crawler", _migrate_and_seed, "seeded_pg_template"
    ) as url:
        yield url
