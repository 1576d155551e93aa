"""Every migration of both stores can be undone: upgrade, downgrade to the empty database, upgrade
again, and the schema is the models' once more, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import MetaData

from crawler_service.data import migrations as crawler_migrations
from crawler_service.data import models as crawler_models
from scheduler_service.db import migrations as scheduler_migrations
from scheduler_service.db import models as scheduler_models
from tests.support import postgres
from tests.support.migrations import downgrade, schema_diff, tables

STORES: dict[str, tuple[ModuleType, MetaData]] = {
    "scheduler": (scheduler_migrations, scheduler_models.Base.metadata),
    "crawler": (crawler_migrations, crawler_models.Base.metadata),
}


@pytest.fixture(params=postgres.BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/roundtrip.db"
        return
    request.getfixturevalue("pg_available")
    with postgres.fresh("ghp_roundtrip") as url:
        yield url


@pytest.mark.parametrize("store", sorted(STORES))
def test_upgrade_downgrade_upgrade(empty_url: str, store: str) -> None:
    migrations, metadata = STORES[store]
    upgrade: Callable[[str], None] = migrations.upgrade
    upgrade(empty_url)
    assert set(metadata.tables) <= tables(empty_url)

    downgrade(empty_url, migrations.SCRIPT_LOCATION)

    assert tables(empty_url) == {migrations.VERSION_TABLE}
    upgrade(empty_url)
    assert schema_diff(empty_url, metadata) == []
