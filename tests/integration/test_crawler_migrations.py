"""The hand-written crawler migration creates exactly the schema the models describe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from common.db import create_sync
from crawler_service.data.migrations import upgrade
from crawler_service.data.models import Base
from tests.support import postgres


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/crawler.db"
        return
    request.getfixturevalue("pg_available")
    with postgres.fresh("ghp_crawl_mig") as url:
        yield url


def test_migration_matches_models_and_is_idempotent(empty_url: str):
    upgrade(empty_url)
    upgrade(empty_url)  # a second replica starting: nothing to do

    engine = create_sync(empty_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert [d for d in diff if not (d[0] == "remove_table" and d[1].name.endswith("version"))] == []
