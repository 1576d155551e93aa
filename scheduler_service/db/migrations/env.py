"""Alembic environment: runs on the connection `common.db.upgrade` passes in."""

from __future__ import annotations

from alembic import context

from scheduler_service.db.migrations import VERSION_TABLE
from scheduler_service.db.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    version_table=VERSION_TABLE,
)
with context.begin_transaction():
    context.run_migrations()
