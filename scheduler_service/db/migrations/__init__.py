"""Alembic migrations of the scheduler's database (runs and schedules). `upgrade(url)` applies them
(under a migration lock)."""

from __future__ import annotations

from common import db

SCRIPT_LOCATION = "scheduler_service.db:migrations"
VERSION_TABLE = "alembic_version_scheduler"


def upgrade(url: str, revision: str = "head") -> None:
    db.upgrade(url, SCRIPT_LOCATION, "scheduler", VERSION_TABLE, revision)
