"""`CrawlerStore` contract on SQLite and PostgreSQL: leases, sweep state, raw items, links; and
overlapping replacements of one repository's rows (PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from common.clock import ManualClock
from crawler_service.data.models import RAW_PULL, RawItem, Release, Repository
from crawler_service.data.records import FetchResult, Link, RawRecord
from crawler_service.data.store import CrawlerStore
from tests.support import postgres

REPO = "acme/widgets"
T0 = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
async def store(crawler_db_url: str) -> AsyncIterator[CrawlerStore]:
    async with await CrawlerStore.open(crawler_db_url) as opened:
        yield opened


async def test_lease_is_exclusive_until_it_expires(crawler_db_url: str):
    clock = ManualClock(T0)
    async with await CrawlerStore.open(crawler_db_url, clock=clock) as store:
        ttl = timedelta(seconds=30)
        assert await store.try_lock(REPO, "a", ttl)
        assert not await store.try_lock(REPO, "b", ttl)
        assert await store.try_lock(REPO, "a", ttl)  # renewal
        clock.advance(timedelta(seconds=31))
        assert await store.try_lock(REPO, "b", ttl)
        await store.unlock(REPO, "a")  # no longer a's: a no-op
        assert not await store.try_lock(REPO, "a", ttl)
        await store.unlock(REPO, "b")
        assert await store.try_lock(REPO, "a", ttl)


async def test_watermark_and_etags_move_forward_together(store: CrawlerStore):
    result = FetchResult(REPO, REPO, ok=True)
    assert await store.complete_sweep(REPO, T0, {"u1": "e1"}, result, "r1")
    assert not await store.complete_sweep(
        REPO, T0 - timedelta(hours=1), {"u1": "old"}, result, "r2"
    )
    state = await store.sweep_state(REPO)
    assert (state.watermark, dict(state.etags)) == (T0, {"u1": "e1"})
    assert await store.complete_sweep(REPO, T0 + timedelta(hours=1), {"u1": "e2"}, result, "r3")
    assert (await store.sweep_state(REPO)).etags == {"u1": "e2"}
    assert [r.repository for r in await store.fetch_results("r2")] == [REPO]


async def test_raw_items_are_upserted_and_pending_until_marked(store: CrawlerStore):
    await store.put_raw(REPO, [RawRecord(RAW_PULL, "1", {"v": 1}, T0)])
    await store.put_raw(REPO, [RawRecord(RAW_PULL, "1", {"v": 2}, T0 + timedelta(hours=1))])
    items = await store.raw_items(REPO, [RAW_PULL], pending_only=True)
    assert [(i.key, i.data) for i in items] == [("1", {"v": 2})]
    assert await store.known_pulls(REPO) == {1: T0 + timedelta(hours=1)}
    await store.mark_upserted(items)
    assert await store.raw_items(REPO, [RAW_PULL], pending_only=True) == []
    count = await store.select(sa.select(sa.func.count()).select_from(RawItem))
    assert count == [(1,)]


async def test_links_replace_and_set_the_marker_together(store: CrawlerStore):
    await store.upsert_repository(
        {"repository": REPO, "full_name": "Acme/Widgets", "owner": "acme",
         "default_branch": "main", "archived": False, "updated_at": T0}
    )  # fmt: skip
    await store.replace_links(REPO, [Link(1, REPO, 10, "description")])
    await store.replace_links(REPO, [])
    marker = await store.select(sa.select(Repository.links_computed_at))
    assert marker[0][0] is not None
    assert await store.repositories_of("ACME") == [REPO]


# Two runs replacing one repository's rows at once (PostgreSQL) must not fail. Two crawls of one
# repository (the hourly schedule and a manual one) serialize their fetches, but their upsert steps
# can overlap: both then replace the same reviews, commits and releases. A replacement is delete +
# insert; the second one's delete cannot see rows the first inserted and has not committed yet, so
# its insert met them as duplicate keys (IntegrityError: an INTERNAL failure).

RACED_REPO = "octo/app"
RELEASES = [
    {
        "repository": RACED_REPO,
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
        await first.execute(sa.delete(Release).where(Release.repository == RACED_REPO))
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
                await store.replace_releases(RACED_REPO, RELEASES)
            await _replace_while_another_replacement_commits(
                store, store.replace_releases(RACED_REPO, RELEASES)
            )
            rows = await store.select(sa.select(Release.release_id).order_by(Release.release_id))
    assert [row.release_id for row in rows] == [1, 2]
