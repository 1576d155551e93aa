"""The hand-written scheduler migrations create exactly the schema the models describe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler_service.db.migrations import upgrade
from scheduler_service.db.models import Base
from tests.support import postgres
from tests.support.migrations import schema_diff


@pytest.fixture(params=postgres.BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/scheduler.db"
        return
    request.getfixturevalue("pg_available")
    with postgres.fresh("ghp_sched_mig") as url:
        yield url


def test_migration_matches_models_and_is_idempotent(empty_url: str) -> None:
    upgrade(empty_url)
    upgrade(empty_url)  # a second replica starting: nothing to do

    assert schema_diff(empty_url, Base.metadata) == []
