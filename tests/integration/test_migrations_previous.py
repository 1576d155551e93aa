"""A database created before the restructuring into parts (commit `PREVIOUS`) starts with no pending
migration of its own: revision ids and version tables are unchanged, so the current code sees the
old database at a revision of its history and applies only the revisions added since (none, for a
store whose migrations did not change), for the run store and the crawler store, on SQLite and
PostgreSQL.

The old databases are made by the old code itself: its packages are extracted from git history and
its `upgrade()` runs in a subprocess that imports them instead of the installed ones.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from common.db import sync_url
from crawler_service.data import migrations as crawler_migrations
from scheduler_service.db import migrations as scheduler_migrations
from tests.support import postgres

ROOT = Path(__file__).resolve().parents[2]
#: The last commit before the restructuring: migrations lived in `<service>/migrations/`.
PREVIOUS = "3ac778f"
OLD_UPGRADE = {
    "scheduler": "scheduler_service.migrations",
    "crawler": "crawler_service.migrations",
}
_REVISION = re.compile(r'^revision = "([^"]+)"', re.MULTILINE)
CURRENT = {
    "scheduler": scheduler_migrations,
    "crawler": crawler_migrations,
}


@pytest.fixture(scope="module")
def previous_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages of commit `PREVIOUS`, extracted from git into a temporary directory."""
    archive = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "archive",
            PREVIOUS,
            "common",
            "scheduler_service",
            "crawler_service",
        ],
        capture_output=True,
        timeout=60,
    )
    if archive.returncode != 0:
        reason = archive.stderr.decode(errors="replace").strip()
        pytest.skip(f"commit {PREVIOUS} is not in this clone's git history (shallow?): {reason}")
    tree = tmp_path_factory.mktemp("previous")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


@pytest.fixture(params=postgres.BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/previous.db"
        return
    request.getfixturevalue("pg_available")
    with postgres.fresh("ghp_previous") as url:
        yield url


def _old_upgrade(tree: Path, store: str, url: str) -> None:
    """Migrate `url` with the old code of `store`, checking that the old code is what ran."""
    code = (
        "import sys\n"
        f"import {OLD_UPGRADE[store]} as migrations\n"
        "assert migrations.__file__.startswith(sys.argv[2]), migrations.__file__\n"
        "migrations.upgrade(sys.argv[1])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run(
        [sys.executable, "-c", code, url, str(tree)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def _state(url: str) -> tuple[set[str], dict[str, set[str]]]:
    """The tables of `url`, and the revisions recorded in each Alembic version table."""
    engine = create_engine(sync_url(url))
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            versions = {
                table: set(conn.execute(text(f"SELECT version_num FROM {table}")).scalars())
                for table in tables
                if "alembic_version" in table
            }
        return tables, versions
    finally:
        engine.dispose()


def _history(store: str) -> list[str]:
    """The current revisions of `store`, oldest first."""
    config = Config()
    config.set_main_option("script_location", CURRENT[store].SCRIPT_LOCATION)
    return [
        rev.revision for rev in reversed(list(ScriptDirectory.from_config(config).walk_revisions()))
    ]


def _previous_revisions(tree: Path, store: str) -> set[str]:
    """The revision ids the old code shipped (read from its scripts, not imported)."""
    versions = tree / OLD_UPGRADE[store].replace(".", "/") / "versions"
    found = (_REVISION.search(path.read_text()) for path in versions.glob("*.py"))
    return {match[1] for match in found if match}


@pytest.mark.parametrize("store", ["scheduler", "crawler"])
def test_previous_database_has_no_pending_migration(
    previous_tree: Path, empty_url: str, store: str
) -> None:
    _old_upgrade(previous_tree, store, empty_url)
    tables, versions = _state(empty_url)
    assert len(versions) == 1, versions
    [table] = versions
    history = _history(store)
    shipped = _previous_revisions(previous_tree, store)
    # The old head is the current history's revision of the same id; what follows it is new.
    assert versions[table] == {history[len(shipped) - 1]}
    assert set(history[: len(shipped)]) == shipped

    CURRENT[store].upgrade(empty_url)

    upgraded_tables, upgraded = _state(empty_url)
    assert upgraded == {table: {history[-1]}}
    assert tables <= upgraded_tables
    if history[-1] in shipped:  # nothing added since: nothing may change
        assert upgraded_tables == tables
