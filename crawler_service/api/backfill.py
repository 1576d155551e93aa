"""Starting `backfill_links` runs from the query path, without ever making a query wait for one.

The scheduler deduplicates by concurrency key (`links:<owner/repo>`, JOIN), so any number of
crawler replicas asking at once share one run. This module only keeps one replica from asking
more than needed: concurrent calls for a repository share one in-flight TriggerRun, and its answer
is cached briefly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import structlog

from common.auth.credentials import ClientCredentials
from common.client.config import replica_options
from common.jobs import BackfillLinksSpec, default_concurrency_key, job_to_pb
from common.lifecycle import Closing
from common.proto.ghpulse.v1 import runs_pb2, scheduler_service_pb2, scheduler_service_pb2_grpc

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _Cached:
    run_id: str
    expires_at: float


def trigger_request(repository: str) -> scheduler_service_pb2.TriggerRunRequest:
    """The TriggerRun request joining (or starting) the backfill of `repository`'s links."""
    spec = BackfillLinksSpec(repository)
    request = scheduler_service_pb2.TriggerRunRequest(
        concurrency_key=default_concurrency_key(spec),
        on_conflict=scheduler_service_pb2.CONFLICT_POLICY_JOIN,
        trigger=runs_pb2.TRIGGER_BACKFILL,
    )
    job_to_pb(spec, request)
    return request


class BackfillStarter(Closing):
    """Starts (or joins) `backfill_links` runs through `SchedulerService.TriggerRun`.

    Use as `async with BackfillStarter(addr) as starter:` (or call `close()`); the channel to the
    scheduler is opened on first use.
    """

    def __init__(
        self,
        scheduler_addr: str,
        credentials: ClientCredentials | None = None,
        *,
        timeout: float = 1.0,
        ttl: float = 10.0,
        failure_ttl: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`timeout` bounds each TriggerRun; a run id is reused for `ttl` seconds, a failure to
        reach the scheduler for `failure_ttl` (so a burst of queries does not each wait for it)."""
        self._addr = scheduler_addr
        self._credentials = credentials or ClientCredentials()
        self._timeout = timeout
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._monotonic = monotonic
        self._channel: grpc.aio.Channel | None = None
        self._cache: dict[str, _Cached] = {}
        self._inflight: dict[str, asyncio.Future[str]] = {}

    async def ensure(self, repository: str) -> str:
        """The id of the backfill run for `repository` ("owner/name"), or "" if the scheduler
        could not be reached in time. Never raises for scheduler trouble."""
        key = default_concurrency_key(BackfillLinksSpec(repository))
        cached = self._cache.get(key)
        if cached is not None and cached.expires_at > self._monotonic():
            return cached.run_id
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._trigger(repository, key))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _done: self._inflight.pop(key, None))
        # Shielded: one caller giving up must not cancel the call the others wait for.
        return await asyncio.shield(pending)

    async def _trigger(self, repository: str, key: str) -> str:
        try:
            response = await self._stub().TriggerRun(
                trigger_request(repository), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "backfill.trigger_failed",
                repository=repository,
                code=exc.code().name,
                details=exc.details(),
            )
            self._remember(key, "", self._failure_ttl)
            return ""
        run_id = response.run.id
        log.info(
            "backfill.triggered",
            repository=repository,
            run_id=run_id,
            disposition=scheduler_service_pb2.Disposition.Name(response.disposition),
        )
        self._remember(key, run_id, self._ttl)
        return run_id

    def _remember(self, key: str, run_id: str, ttl: float) -> None:
        self._cache[key] = _Cached(run_id, self._monotonic() + ttl)

    def _stub(self) -> scheduler_service_pb2_grpc.SchedulerServiceAsyncStub:
        if self._channel is None:
            self._channel = self._credentials.channel(self._addr, replica_options())
        return scheduler_service_pb2_grpc.SchedulerServiceStub(self._channel)

    async def aclose(self) -> None:
        """Close the channel to the scheduler (in-flight calls are cancelled)."""
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
