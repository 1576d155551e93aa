"""Schema checks of the hand-written migrations: the migrated database against the models, and
Alembic downgrades (which the services never run, so only tests exercise them)."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect

from common.db import create_sync


def schema_diff(url: str, metadata: MetaData) -> list[Any]:
    """What Alembic's autogenerate would change to make `url` match `metadata`, ignoring the
    version tables (not in the models)."""
    engine = create_sync(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    return [d for d in diff if not (d[0] == "remove_table" and "alembic_version" in d[1].name)]


def downgrade(url: str, script_location: str, revision: str = "base") -> None:
    """Run the migrations in `script_location` down to `revision`."""
    engine = create_sync(url)
    try:
        with engine.connect() as conn:
            config = Config()
            config.set_main_option("script_location", script_location)
            config.attributes["connection"] = conn
            command.downgrade(config, revision)
            conn.commit()
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = create_sync(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
