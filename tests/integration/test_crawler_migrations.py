"""The hand-written crawler migration creates exactly the schema the models describe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler_service.data.migrations import upgrade
from crawler_service.data.models import Base
from tests.support import postgres
from tests.support.migrations import schema_diff


@pytest.fixture(params=postgres.BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/crawler.db"
        return
    request.getfixturevalue("pg_available")
    with postgres.fresh("ghp_crawl_mig") as url:
        yield url


def test_migration_matches_models_and_is_idempotent(empty_url: str) -> None:
    upgrade(empty_url)
    upgrade(empty_url)  # a second replica starting: nothing to do

    assert schema_diff(empty_url, Base.metadata) == []
