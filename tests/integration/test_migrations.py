"""Migrations applied by several processes starting together do not race (advisory lock on
PostgreSQL, a file lock beside a SQLite database), and `ghpulse migrate` applies both databases."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from common.db import sync_url
from scheduler_service.db.migrations import upgrade
from tests.support import postgres


def _versions(url: str) -> list[str]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(text("SELECT version_num FROM alembic_version_scheduler")).scalars()
            )
    finally:
        engine.dispose()


def _race(url: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(upgrade, url) for _ in range(4)]:
            future.result()


def test_concurrent_upgrades_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/race.db"
    _race(url)
    assert len(_versions(url)) == 1


@pytest.mark.postgres
def test_concurrent_upgrades_on_postgresql(pg_available: None) -> None:
    with postgres.fresh("ghp_migrate") as url:
        _race(url)
        assert len(_versions(url)) == 1


def test_ghpulse_migrate_applies_both_databases(tmp_path: Path) -> None:
    scheduler_db, crawler_db = f"sqlite:///{tmp_path}/s.db", f"sqlite:///{tmp_path}/c.db"
    ghpulse = Path(sys.executable).parent / "ghpulse"
    result = subprocess.run(
        [str(ghpulse), "migrate", "--scheduler-db", scheduler_db, "--crawler-db", crawler_db],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for url, table in ((scheduler_db, "runs"), (crawler_db, "pull_requests")):
        engine = create_engine(sync_url(url))
        try:
            assert table in inspect(engine).get_table_names()
        finally:
            engine.dispose()
