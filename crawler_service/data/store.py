"""The crawler's write side: raw items, fetch state, repository leases and the typed tables.

All crawler replicas share one database (SQLite file or PostgreSQL). Every write is idempotent: an
upsert on the table's unique key, chosen by dialect, so a retried step or a second replica doing the
same work converges to the same rows. Repository keys are `models.repo_key` (lowercased).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Self, TypeVarTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.clock import Clock, SystemClock
from common.db import create_async, is_sqlite, runs_to_end
from common.lifecycle import Closing
from crawler_service.data import migrations
from crawler_service.data.models import (
    RAW_PULL,
    ClosingLink,
    Commit,
    FetchProgress,
    FetchState,
    PullRequest,
    RawItem,
    Release,
    Repository,
    RepositoryLock,
    Review,
)
from crawler_service.data.records import (
    FetchResult,
    Link,
    RawRecord,
    Row,
    SkippedPull,
    StoredRaw,
    SweepState,
)

Ts = TypeVarTuple("Ts")


@runs_to_end
class CrawlerStore(Closing):
    """Async access to the crawler database. Open with `await CrawlerStore.open(url)`."""

    def __init__(self, engine: AsyncEngine, clock: Clock | None = None, reader: Any = None) -> None:
        self.engine = engine
        self.reader: AsyncEngine = reader or engine  # SQLite: deferred, reads skip the write lock
        self.clock: Clock = clock or SystemClock()

    @classmethod
    async def open(
        cls, url: str, *, clock: Clock | None = None, migrate: bool = False, **pool: Any
    ) -> Self:
        """A store on `url`; `migrate` first upgrades the schema; `pool` sizes PostgreSQL's pool."""
        if migrate:
            await asyncio.to_thread(migrations.upgrade, url)
        reader = create_async(url, immediate=False) if is_sqlite(url) else None
        return cls(create_async(url, **({} if reader else pool)), clock, reader)

    async def aclose(self) -> None:
        for engine in {self.engine, self.reader}:  # one engine but on SQLite
            await engine.dispose()

    def _insert(self, conn: AsyncConnection, model: Any) -> Any:
        return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(model)

    async def _insert_replacing(
        self,
        conn: AsyncConnection,
        model: Any,
        rows: Sequence[Row],
        keys: Sequence[str] | None = None,
    ) -> None:
        """Insert `rows` after a delete, overwriting rows with the same `keys` (default: the
        primary key). On PostgreSQL a concurrent replacement of the same rows may have committed
        rows this transaction's delete could not see; a plain insert would fail on them."""
        if not rows:
            return
        table = model.__table__
        keys = list(keys or [column.name for column in table.primary_key.columns])
        stmt = self._insert(conn, model)
        values = {
            column.name: stmt.excluded[column.name]
            for column in table.columns
            if column.name not in keys and not column.primary_key
        }
        await conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=values), rows)

    # Leases -------------------------------------------------------------------------------------

    async def try_lock(self, repository: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew the fetch lease on `repository` for `holder`; False if another holds it."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            stmt = self._insert(conn, RepositoryLock).values(
                repository=repository, holder=holder, expires_at=now + ttl
            )
            table = RepositoryLock.__table__
            stmt = stmt.on_conflict_do_update(
                index_elements=["repository"],
                set_={"holder": holder, "expires_at": now + ttl},
                where=sa.or_(table.c.holder == holder, table.c.expires_at < now),
            )
            await conn.execute(stmt)
            current = await conn.scalar(
                sa.select(RepositoryLock.holder).where(RepositoryLock.repository == repository)
            )
        return current == holder

    async def unlock(self, repository: str, holder: str) -> None:
        """Give the lease back (a no-op if `holder` no longer holds it)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.delete(RepositoryLock).where(
                    RepositoryLock.repository == repository, RepositoryLock.holder == holder
                )
            )

    # Fetch state --------------------------------------------------------------------------------

    async def sweep_state(self, repository: str) -> SweepState:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(FetchState.watermark, FetchState.etags).where(
                        FetchState.repository == repository
                    )
                )
            ).first()
        return SweepState(row.watermark, dict(row.etags or {})) if row else SweepState()

    async def complete_sweep(
        self,
        repository: str,
        watermark: datetime | None,
        etags: Mapping[str, str],
        result: FetchResult,
        run_id: str,
    ) -> bool:
        """Record a fully successful sweep: advance watermark + ETags together (never backwards) and
        mark the repository done for `run_id`, in one transaction. False if a newer sweep won."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            await conn.execute(
                self._insert(conn, FetchState)
                .values(repository=repository, watermark=None, etags={}, last_success_at=None)
                .on_conflict_do_nothing(index_elements=["repository"])
            )
            # A repository without pull requests has no watermark: only a first sweep is forward.
            forward: sa.ColumnElement[bool] = FetchState.watermark.is_(None)
            if watermark is not None:
                forward = sa.or_(forward, FetchState.watermark <= watermark)
            updated = await conn.execute(
                sa.update(FetchState)
                .where(FetchState.repository == repository, forward)
                .values(watermark=watermark, etags=dict(etags), last_success_at=now)
            )
            await self._record_fetch(conn, run_id, result)
        return bool(updated.rowcount)

    async def record_fetch(self, run_id: str, result: FetchResult) -> None:
        """Record a repository's fetch outcome for `run_id` (a permanent failure, typically)."""
        async with self.engine.begin() as conn:
            await self._record_fetch(conn, run_id, result)

    async def _record_fetch(self, conn: AsyncConnection, run_id: str, result: FetchResult) -> None:
        values = {
            "run_id": run_id,
            "repository": result.repository,
            "full_name": result.full_name,
            "ok": result.ok,
            "error_code": result.error_code,
            "error": result.error,
            "prs_updated": result.prs_updated,
            "requests": result.requests,
            "not_modified": result.not_modified,
            "skipped": [{"number": s.number, "reason": s.reason} for s in result.skipped] or None,
            "graphql_queries": result.graphql_queries,
            "graphql_points": result.graphql_points,
            "github_owner": result.github_owner,
            "finished_at": self.clock.now(),
        }
        stmt = self._insert(conn, FetchProgress).values(**values)
        await conn.execute(
            stmt.on_conflict_do_update(index_elements=["run_id", "repository"], set_=values)
        )

    async def fetch_results(self, run_id: str) -> list[FetchResult]:
        """The repositories `run_id`'s fetch step finished (any attempt), in finishing order."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(FetchProgress)
                .where(FetchProgress.run_id == run_id)
                .order_by(FetchProgress.finished_at, FetchProgress.repository)
            )
            return [
                FetchResult(
                    r.repository,
                    r.full_name,
                    r.ok,
                    r.error_code,
                    r.error,
                    r.prs_updated,
                    r.requests,
                    r.not_modified,
                    tuple(SkippedPull(s["number"], s["reason"]) for s in r.skipped or ()),
                    r.graphql_queries,
                    r.graphql_points,
                    r.github_owner,
                )
                for r in rows
            ]

    # Raw items ----------------------------------------------------------------------------------

    async def put_raw(self, repository: str, records: Sequence[RawRecord]) -> None:
        """Store (replace) raw items in one transaction, marking them pending for upsert."""
        if not records:
            return
        now = self.clock.now()
        rows = [
            {
                "repository": repository,
                "kind": record.kind,
                "key": record.key,
                "data": record.data,
                "item_updated_at": record.item_updated_at,
                "fetched_at": now,
                "pending": True,
            }
            for record in records
        ]
        async with self.engine.begin() as conn:
            stmt = self._insert(conn, RawItem)
            replaced = ("data", "item_updated_at", "fetched_at", "pending")
            # One executemany for the batch (a GraphQL page stores 3 items per PR at once).
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["repository", "kind", "key"],
                    set_={name: stmt.excluded[name] for name in replaced},
                ),
                rows,
            )

    async def known_pulls(self, repository: str) -> dict[int, datetime | None]:
        """PR number -> the `updated_at` of its stored detail."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(RawItem.key, RawItem.item_updated_at).where(
                    RawItem.repository == repository, RawItem.kind == RAW_PULL
                )
            )
            return {int(key): updated for key, updated in rows}

    async def raw_items(
        self,
        repository: str,
        kinds: Iterable[str],
        *,
        pending_only: bool = False,
        keys: Collection[str] | None = None,
    ) -> list[StoredRaw]:
        """Stored raw items of `repository` of the given kinds (only pending ones, or only the
        given keys, if asked)."""
        query = sa.select(
            RawItem.id, RawItem.kind, RawItem.key, RawItem.data, RawItem.fetched_at
        ).where(RawItem.repository == repository, RawItem.kind.in_(list(kinds)))
        if pending_only:
            query = query.where(RawItem.pending.is_(True))
        if keys is not None:
            query = query.where(RawItem.key.in_(list(keys)))
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(RawItem.id))
            return [StoredRaw(r.id, r.kind, r.key, r.data, r.fetched_at) for r in rows]

    async def mark_upserted(self, items: Sequence[StoredRaw]) -> None:
        """Clear the pending flag of `items`, unless one was re-fetched meanwhile."""
        if not items:
            return
        stmt = (
            sa.update(RawItem)
            .where(RawItem.id == sa.bindparam("item_id"))
            .where(RawItem.fetched_at == sa.bindparam("item_fetched_at"))
            .values(pending=False)
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                stmt, [{"item_id": i.id, "item_fetched_at": i.fetched_at} for i in items]
            )

    async def repositories_of(self, owner: str) -> list[str]:
        """The stored repository keys of an owner (user or organization)."""
        async with self.engine.connect() as conn:
            rows = await conn.scalars(
                sa.select(Repository.repository)
                .where(Repository.owner == owner.lower(), Repository.archived.is_(False))
                .order_by(Repository.repository)
            )
            return list(rows)

    # Typed tables -------------------------------------------------------------------------------

    async def upsert_repository(self, row: Row) -> None:
        """Insert or update a `repositories` row (its link/classify markers are kept)."""
        async with self.engine.begin() as conn:
            stmt = self._insert(conn, Repository).values(**row)
            update = {k: v for k, v in row.items() if k != "repository"}
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["repository"], set_=update)
            )

    async def replace_pulls(
        self, repository: str, pulls: Sequence[tuple[Row, Sequence[Row], Sequence[Row]]]
    ) -> None:
        """Write PRs with their reviews and commits (replacing the stored ones), in one transaction.

        Each entry is (pull_requests row, reviews rows, commits rows); a PR's size class and cycle
        times are kept until the classify step recomputes them.
        """
        if not pulls:
            return
        numbers = [pull["number"] for pull, _reviews, _commits in pulls]
        async with self.engine.begin() as conn:
            # A few statements per batch, not per PR: statements, not rows, are what cost here.
            stmt = self._insert(conn, PullRequest)
            kept = ("repository", "number")
            update = {k: stmt.excluded[k] for k in pulls[0][0] if k not in kept}
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=list(kept), set_=update),
                [dict(pull) for pull, _reviews, _commits in pulls],
            )
            for model, rows in (
                (Review, [dict(row) for _pull, reviews, _commits in pulls for row in reviews]),
                (Commit, [dict(row) for _pull, _reviews, commits in pulls for row in commits]),
            ):
                await conn.execute(
                    sa.delete(model).where(
                        model.repository == repository, model.pr_number.in_(numbers)
                    )
                )
                await self._insert_replacing(conn, model, rows)

    async def replace_releases(self, repository: str, rows: Sequence[Row]) -> None:
        """Replace the stored releases of `repository`."""
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(Release).where(Release.repository == repository))
            await self._insert_replacing(conn, Release, [dict(row) for row in rows])

    async def replace_links(self, repository: str, links: Sequence[Link]) -> None:
        """Replace the closing links of `repository` and set its links marker, atomically."""
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(ClosingLink).where(ClosingLink.repository == repository))
            await self._insert_replacing(
                conn,
                ClosingLink,
                [
                    {
                        "repository": repository,
                        "pr_number": link.pr_number,
                        "issue_repository": link.issue_repository,
                        "issue_number": link.issue_number,
                        "source": link.source,
                    }
                    for link in links
                ],
                keys=("repository", "pr_number", "issue_repository", "issue_number"),
            )
            await conn.execute(
                sa.update(Repository)
                .where(Repository.repository == repository)
                .values(links_computed_at=self.clock.now())
            )

    async def save_classification(self, repository: str, rows: Mapping[int, Row]) -> None:
        """Store size class and cycle-time seconds per PR number and the classify marker."""
        async with self.engine.begin() as conn:
            for number, values in rows.items():
                await conn.execute(
                    sa.update(PullRequest)
                    .where(PullRequest.repository == repository, PullRequest.number == number)
                    .values(**values)
                )
            await conn.execute(
                sa.update(Repository)
                .where(Repository.repository == repository)
                .values(classified_at=self.clock.now())
            )

    async def select(self, query: sa.Select[*Ts]) -> list[sa.Row[*Ts]]:
        """Run a read query (the steps' loaders build them) and return all rows."""
        async with self.engine.connect() as conn:
            return list(await conn.execute(query))
