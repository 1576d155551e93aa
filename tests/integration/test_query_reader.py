"""A query to the crawler's database is answered while a crawl holds the SQLite write lock: the
query service reads through the store's reader engine (transactions begun deferred, reading the
WAL snapshot), not the writer's BEGIN IMMEDIATE, which would wait for the lock and, past the busy
timeout, fail with "database is locked"."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from crawler_service.data.queries import PullRequestFilter, Queries
from crawler_service.data.store import CrawlerStore


@pytest.mark.parametrize("seeded_url", ["sqlite"], indirect=True)
async def test_a_query_reads_while_a_write_transaction_holds_the_lock(seeded_url: str) -> None:
    store = await CrawlerStore.open(seeded_url)
    try:
        assert store.reader is not store.engine
        queries = Queries(store.reader)
        async with store.engine.begin() as writer:
            # The writer holds the write lock (BEGIN IMMEDIATE) and changes a row, uncommitted.
            await writer.execute(text("UPDATE pull_requests SET title = 'changed'"))
            repo = await queries.repository("octo/app")
            # The writer never commits while this waits: a read that needed the lock would
            # fail with "database is locked" once the busy timeout passed.
            page = await queries.list_pull_requests(repo, PullRequestFilter(), 50, None)
            # It sees the last committed state, not the writer's uncommitted change.
            assert page.items
            assert all(item.title != "changed" for item in page.items)
    finally:
        await store.aclose()
