"""Alembic environment: runs on the connection `common.db.upgrade` passes in (online only)."""

from __future__ import annotations

from alembic import context

from crawler_service.data.migrations import VERSION_TABLE
from crawler_service.data.models import Base


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run crawler migrations through crawler_service.data.migrations.upgrade(url)"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
