"""A cancelled crawler-store call (an abandoned attempt's) still ends its transaction: on SQLite it
must not leave the database's write lock behind (RELIABILITY.md, kill -9 scheduler)."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from crawler_service.data.models import RAW_PULL
from crawler_service.data.records import RawRecord
from crawler_service.data.store import CrawlerStore

REPO = "acme/widgets"


@pytest.fixture
def no_gc() -> Iterator[None]:
    # The garbage collector would eventually finalize a leaked connection and free the lock: the
    # bug hid that way for minutes. Without it, a leak is a lock held until the test ends.
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _write_lock_free(path: Path, wait: float) -> bool:
    """Whether another connection takes the write lock within `wait` seconds."""
    conn = sqlite3.connect(path, timeout=wait, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


async def test_a_cancelled_write_ends_its_transaction_and_frees_the_lock(
    tmp_path: Path, no_gc: None
):
    path = tmp_path / "crawler.db"
    async with await CrawlerStore.open(f"sqlite:///{path}", migrate=True) as store:
        entered, release = threading.Event(), threading.Event()

        def hold() -> None:  # on aiosqlite's thread, inside the store's INSERT
            entered.set()
            release.wait(30)

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.run_async(lambda raw: raw.create_function("hold", 0, hold))

        event.listen(store.engine.sync_engine, "connect", on_connect)
        with sqlite3.connect(path) as admin:
            admin.execute("CREATE TRIGGER hold BEFORE INSERT ON raw_items BEGIN SELECT hold(); END")
        admin.close()
        # Several items: an executemany, as the fetch step's (a PR, its reviews, its commits).
        records = [RawRecord(RAW_PULL, str(number), {"v": 1}) for number in (1, 2, 3)]
        write = asyncio.create_task(store.put_raw(REPO, records))
        # Cancelled mid-statement, inside its transaction (an attempt abandoned mid-write).
        assert await asyncio.to_thread(entered.wait, 10)
        write.cancel()
        # Let the cancellation reach the call before its statement ends (a second is plenty: the
        # statement waits on aiosqlite's thread, not on the event loop).
        await asyncio.sleep(1)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await write

        assert await asyncio.to_thread(_write_lock_free, path, 5.0)
        # The call ran to its end: committed, not half-done.
        assert [item.key for item in await store.raw_items(REPO, [RAW_PULL])] == ["1", "2", "3"]
