"""The worker registry: the `workers` table, one row per crawler connected to some replica."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.db import runs_to_end
from scheduler_service.db.models import WorkerRow

workers = cast(Table, WorkerRow.__table__)


@dataclass(frozen=True)
class WorkerEntry:
    """A crawler as the cluster sees it: its load, and the replica its stream is connected to."""

    worker_id: str
    replica_id: str
    replica_address: str
    slots: int
    free_slots: int
    run_ids: tuple[str, ...]
    draining: bool
    version: str
    protocol_version: int
    connected_at: datetime
    heartbeat_at: datetime


class WorkerRegistry(ABC):
    """The crawlers of the whole cluster. Implementation: `SqlWorkerRegistry`."""

    @abstractmethod
    async def connected(self, entry: WorkerEntry) -> None:
        """Record that `entry.worker_id` is now connected to `entry.replica_id` (replacing the
        row another replica may still hold for it: the crawler moved)."""

    @abstractmethod
    async def refresh(
        self, entries: Sequence[WorkerEntry], purge_before: datetime | None = None
    ) -> int:
        """Renew these crawlers' rows, all of one replica; a row that moved to another replica
        meanwhile is left alone, a missing one is written again. With `purge_before`, also
        delete rows last written before it (as `purge`), in the same transaction: one
        transaction per refresh interval, however many crawlers. How many rows were deleted."""

    @abstractmethod
    async def disconnected(self, worker_id: str, replica_id: str) -> None:
        """Delete the crawler's row if `replica_id` still holds it."""

    @abstractmethod
    async def live(self, since: datetime) -> list[WorkerEntry]:
        """The crawlers whose rows were written at or after `since`, by worker id."""

    @abstractmethod
    async def purge(self, before: datetime) -> int:
        """Delete rows last written before `before` (their replica died); how many."""


@runs_to_end
class SqlWorkerRegistry(WorkerRegistry):
    def __init__(self, engine: AsyncEngine, reader: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader

    async def connected(self, entry: WorkerEntry) -> None:
        async with self._engine.begin() as conn:
            # Delete-then-insert: one portable upsert for SQLite and PostgreSQL.
            await conn.execute(delete(workers).where(workers.c.worker_id == entry.worker_id))
            await conn.execute(workers.insert().values(**_to_row(entry)))

    async def refresh(
        self, entries: Sequence[WorkerEntry], purge_before: datetime | None = None
    ) -> int:
        async with self._engine.begin() as conn:
            for entry in entries:
                await _refresh_one(conn, entry)
            if purge_before is None:
                return 0
            result = await conn.execute(
                delete(workers).where(workers.c.heartbeat_at < purge_before)
            )
        return int(result.rowcount)

    async def disconnected(self, worker_id: str, replica_id: str) -> None:
        statement = delete(workers).where(
            workers.c.worker_id == worker_id, workers.c.replica_id == replica_id
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)

    async def live(self, since: datetime) -> list[WorkerEntry]:
        statement = (
            select(workers).where(workers.c.heartbeat_at >= since).order_by(workers.c.worker_id)
        )
        async with self._reader.connect() as conn:
            return [_from_row(dict(row)) for row in (await conn.execute(statement)).mappings()]

    async def purge(self, before: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(workers).where(workers.c.heartbeat_at < before))
        return int(result.rowcount)


async def _refresh_one(conn: AsyncConnection, entry: WorkerEntry) -> None:
    row = _to_row(entry)
    del row["worker_id"], row["connected_at"]
    result = await conn.execute(
        update(workers)
        .where(workers.c.worker_id == entry.worker_id, workers.c.replica_id == entry.replica_id)
        .values(**row)
    )
    if result.rowcount:
        return
    # Missing: written again, unless another replica wrote the crawler's row meanwhile (it moved
    # there). ON CONFLICT rather than a caught IntegrityError: the transaction goes on.
    insert = sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert
    await conn.execute(insert(workers).values(**_to_row(entry)).on_conflict_do_nothing())


def _to_row(entry: WorkerEntry) -> dict[str, Any]:
    row = asdict(entry)
    row["run_ids"] = list(entry.run_ids)
    return row


def _from_row(row: dict[str, Any]) -> WorkerEntry:
    return WorkerEntry(**{**row, "run_ids": tuple(row["run_ids"])})
