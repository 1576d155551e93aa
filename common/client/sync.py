"""`SyncGhpulseClient`: the typed client for code without an event loop.

It drives a `GhpulseClient` on a private event loop (`asyncio.Runner`), so both clients share one
implementation (retries, request ids, watch resumption). One instance serves one thread at a time,
and must not be used from inside a running event loop (use `GhpulseClient` there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from common.client.aio import GhpulseClient, Triggered
from common.jobs import JobSpec
from common.proto.ghpulse.v1 import pull_request_service_pb2 as ppb
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb

_T = TypeVar("_T")


class SyncGhpulseClient:
    """Blocking twin of `GhpulseClient` (same constructor arguments, same method names)."""

    def __init__(self, scheduler: str | None = None, crawler: str | None = None, **options: Any):
        self._runner = asyncio.Runner()
        # grpc.aio channels bind to the loop that creates them: build the client inside it.
        self._client = self._run(self._make(scheduler, crawler, options))

    @staticmethod
    async def _make(scheduler: str | None, crawler: str | None, options: Any) -> GhpulseClient:
        return GhpulseClient(scheduler, crawler, **options)

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return self._runner.run(coro)

    @property
    def aio(self) -> GhpulseClient:
        """The underlying async client (its coroutines must run on this client's loop)."""
        return self._client

    def close(self) -> None:
        self._run(self._client.aclose())
        self._runner.close()

    def __enter__(self) -> SyncGhpulseClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def trigger(self, job: JobSpec, **options: Any) -> Triggered:
        return self._run(self._client.trigger(job, **options))

    def watch(self, run_id: str, after_seq: int = 0) -> Iterator[spb.WatchRunResponse]:
        """The run's WatchRun messages until it ends, resuming after disconnects."""
        stream = self._client.watch(run_id, after_seq)
        try:
            while True:
                try:
                    yield self._run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            self._run(stream.aclose())  # type: ignore[attr-defined]

    def wait(self, run_id: str) -> runs_pb2.Run:
        return self._run(self._client.wait(run_id))

    def get_run(self, run_id: str) -> runs_pb2.Run:
        return self._run(self._client.get_run(run_id))

    def list_runs(self, **filters: Any) -> spb.ListRunsResponse:
        return self._run(self._client.list_runs(**filters))

    def cancel(self, run_id: str, reason: str = "") -> runs_pb2.Run:
        return self._run(self._client.cancel(run_id, reason))

    def retry(self, run_id: str) -> runs_pb2.Run:
        return self._run(self._client.retry(run_id))

    def workers(self) -> spb.ListWorkersResponse:
        return self._run(self._client.workers())

    def list_pull_requests(self, repository: str, **options: Any) -> ppb.ListPullRequestsResponse:
        return self._run(self._client.list_pull_requests(repository, **options))

    def repository_stats(self, repository: str) -> ppb.GetRepositoryStatsResponse:
        return self._run(self._client.repository_stats(repository))


async def _next(stream: Any) -> spb.WatchRunResponse:
    message: spb.WatchRunResponse = await stream.__anext__()
    return message
