"""Each store's hand-written migrations create exactly the schema its models describe, on SQLite
and on PostgreSQL, and a second upgrade (another replica starting) has nothing to do."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from crawler_service.data import migrations as crawler_migrations
from crawler_service.data import models as crawler_models
from scheduler_service.db import migrations as scheduler_migrations
from scheduler_service.db import models as scheduler_models
from tests.support import postgres
from tests.support.migrations import schema_diff

STORES = {
    "scheduler": (scheduler_migrations.upgrade, scheduler_models.Base.metadata),
    "crawler": (crawler_migrations.upgrade, crawler_models.Base.metadata),
}


@pytest.fixture(params=postgres.BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def _empty_url(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, store: str
) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/{store}.db"
        return
    request.getfixturevalue("pg_available")
    with postgres.fresh(f"ghp_{store[:5]}_mig") as url:
        yield url


@pytest.mark.parametrize("store", sorted(STORES))
def test_migration_matches_models_and_is_idempotent(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, store: str
) -> None:
    upgrade: Callable[[str], None]
    metadata: MetaData
    upgrade, metadata = STORES[store]
    with _empty_url(request, backend, tmp_path, store) as url:
        upgrade(url)
        upgrade(url)  # a second replica starting: nothing to do

        assert schema_diff(url, metadata) == []
