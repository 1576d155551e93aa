"""Holding and watching a run store's writer: for the group-commit tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, text

from scheduler_service.runs.sql.store import SqlRunStore


@contextmanager
def writer_held(store: SqlRunStore) -> Iterator[threading.Event]:
    """The writer thread busy until the event is set (writes queue meanwhile)."""
    gate, holding = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        gate.wait()

    blocker = store.threads.write_pool.submit(hold)
    holding.wait(60)
    try:
        yield gate
    finally:
        gate.set()
        blocker.result()


@contextmanager
def commits(engine: Engine) -> Iterator[list[int]]:
    """Committed write transactions on `engine` (appended as they commit)."""
    done: list[int] = []

    def commit(_conn: Any) -> None:
        done.append(1)

    event.listen(engine, "commit", commit)
    try:
        yield done
    finally:
        event.remove(engine, "commit", commit)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a condition of another thread's queue."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.001)


async def count(store: SqlRunStore, table: str) -> int:
    def rows() -> int:
        with store.threads.reader.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)

    return await asyncio.to_thread(rows)
