"""This replica's part of the cluster view: its connected crawlers, written to the registry when
they connect and disconnect and refreshed every `refresh`; rows not refreshed for `STALE_AFTER`
refreshes (their replica died) are left out of the view and deleted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import structlog

from common.clock import Clock
from scheduler_service.cluster.registry import WorkerEntry, WorkerRegistry
from scheduler_service.orchestration.dispatch import WorkerConn

log = structlog.get_logger(__name__)
#: Refreshes a row may miss before it counts as its replica's leftover.
STALE_AFTER = 3


class Presence:
    """Keeps this replica's crawlers in the `WorkerRegistry`. Registry failures (the database
    briefly down) are logged, never raised: the next refresh repairs the view."""

    def __init__(
        self,
        registry: WorkerRegistry,
        replica_id: str,
        replica_address: str,
        clock: Clock,
        refresh: timedelta,
        connections: Callable[[], list[WorkerConn]],
    ) -> None:
        self.registry = registry
        self.replica_id = replica_id
        self.replica_address = replica_address
        self._clock = clock
        self._refresh = refresh
        self._connections = connections
        self._stopping = asyncio.Event()

    def entry(self, conn: WorkerConn, now: datetime) -> WorkerEntry:
        return WorkerEntry(
            worker_id=conn.id,
            replica_id=self.replica_id,
            replica_address=self.replica_address,
            slots=conn.slots,
            free_slots=conn.free_slots,
            run_ids=tuple(sorted(conn.running)),
            draining=conn.draining,
            version=conn.version,
            protocol_version=conn.protocol_version,
            connected_at=conn.connected_at,
            heartbeat_at=now,
        )

    @property
    def stale_before(self) -> datetime:
        return self._clock.now() - self._refresh * STALE_AFTER

    async def connected(self, conn: WorkerConn) -> None:
        with self._logged("workers.register_failed", conn.id):
            await self.registry.connected(self.entry(conn, self._clock.now()))

    async def disconnected(self, conn: WorkerConn) -> None:
        with self._logged("workers.unregister_failed", conn.id):
            await self.registry.disconnected(conn.id, self.replica_id)

    async def live(self) -> list[WorkerEntry]:
        """The cluster's crawlers: other replicas' rows refreshed recently enough, and this
        replica's own crawlers as they are now (not as last refreshed)."""
        rows = await self.registry.live(self.stale_before)
        crawlers = {row.worker_id: row for row in rows if row.replica_id != self.replica_id}
        now = self._clock.now()
        for conn in self._connections():
            # A row of another replica wins: the crawler moved there, this stream is a leftover.
            crawlers.setdefault(conn.id, self.entry(conn, now))
        return [crawlers[worker_id] for worker_id in sorted(crawlers)]

    async def refresh_once(self) -> None:
        now = self._clock.now()
        entries = [self.entry(conn, now) for conn in self._connections()]
        purged = await self.registry.refresh(entries, self.stale_before)
        if purged:
            log.info("workers.purged", rows=purged)

    def close(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Refresh every `refresh` until `close()`."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._refresh.total_seconds())
            with self._logged("workers.refresh_failed", ""):
                await self.refresh_once()

    @contextlib.contextmanager
    def _logged(self, event: str, worker: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            log.warning(event, worker=worker, replica=self.replica_id, error=str(exc))
