"""Review: two runs replacing one repository's rows at once (PostgreSQL) must not fail.

Two crawls of one repository (the hourly schedule and a manual one) serialize their fetches, but
their upsert steps can overlap: both then replace the same reviews, commits and releases. A
replacement is delete + insert; the second one's delete cannot see rows the first inserted and has
not committed yet, so its insert met them as duplicate keys (IntegrityError: an INTERNAL failure).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from crawler_service.data.models import Release
from crawler_service.data.store import CrawlerStore
from tests.integration.crawl_helpers import crawler_pg_template
from tests.support import postgres

__all__ = ["crawler_pg_template"]

REPO = "octo/app"
RELEASES = [
    {
        "repository": REPO,
        "release_id": number,
        "tag_name": f"v{number}",
        "prerelease": False,
        "published_at": datetime(2024, 3, number, tzinfo=UTC),
    }
    for number in (1, 2)
]


async def _blocked_on_a_lock(store: CrawlerStore) -> None:
    """Until some session of this database waits for a lock (the concurrent replacement)."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while True:
        async with store.engine.connect() as conn:
            if await conn.scalar(query):
                return
        await asyncio.sleep(0.01)  # polling a condition, not waiting for time to pass


async def _replace_while_another_replacement_commits(
    store: CrawlerStore, replace: Awaitable[None]
) -> None:
    async with store.engine.connect() as first:
        transaction = await first.begin()
        await first.execute(sa.delete(Release).where(Release.repository == REPO))
        await first.execute(sa.insert(Release), RELEASES)
        second = asyncio.ensure_future(replace)
        await asyncio.wait_for(_blocked_on_a_lock(store), 30)
        await transaction.commit()
    await asyncio.wait_for(second, 30)


@pytest.mark.postgres
@pytest.mark.parametrize("stored_before", [False, True])
async def test_overlapping_release_replacements_both_succeed(
    crawler_pg_template: str, stored_before: bool
) -> None:
    with postgres.clone(crawler_pg_template) as url:
        async with await CrawlerStore.open(url) as store:
            if stored_before:
                await store.replace_releases(REPO, RELEASES)
            await _replace_while_another_replacement_commits(
                store, store.replace_releases(REPO, RELEASES)
            )
            rows = await store.select(sa.select(Release.release_id).order_by(Release.release_id))
    assert [row.release_id for row in rows] == [1, 2]
