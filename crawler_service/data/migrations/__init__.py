"""The crawler's database migrations (Alembic, hand-written revisions in `versions/`)."""

from __future__ import annotations

from common import db

SCRIPT_LOCATION = "crawler_service.data:migrations"
#: Its own version table, so the crawler and the scheduler could share one database.
VERSION_TABLE = "crawler_alembic_version"


def upgrade(url: str) -> None:
    """Bring the crawler database at `url` to the newest schema (safe for concurrent starts)."""
    db.upgrade(url, SCRIPT_LOCATION, "crawler", VERSION_TABLE)
