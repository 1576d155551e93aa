"""`CrawlerStore` contract on SQLite and PostgreSQL: leases, sweep state, raw items, links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from common.clock import ManualClock
from crawler_service.data.models import RAW_PULL, RawItem, Repository
from crawler_service.data.records import FetchResult, Link, RawRecord
from crawler_service.data.store import CrawlerStore
from tests.integration.crawl_helpers import crawler_db_url, crawler_pg_template, store

__all__ = ["crawler_db_url", "crawler_pg_template", "store"]

REPO = "acme/widgets"
T0 = datetime(2024, 3, 1, tzinfo=UTC)


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
