"""The typed ghpulse client for Python services: `GhpulseClient` (asyncio) and `SyncGhpulseClient`.

    async with GhpulseClient() as client:            # $GHPULSE_SCHEDULER_ADDR / _CRAWLER_ADDR
        triggered = await client.trigger(CrawlSpec(("octo/hello",)))
        async for message in client.watch(triggered.run_id):
            ...
        stats = await client.repository_stats("octo/hello")

Channels use `client_config.SERVICE_CONFIG`: UNAVAILABLE is retried by gRPC itself, within each
call's deadline (`timeout`, 30 s by default). The token of `GHPULSE_TOKEN` (or
`GHPULSE_TOKEN_FILE`, or `token=`) is sent as `authorization: Bearer …`. TriggerRun is
safe to retry because `trigger` always sends a `request_id` (a uuid4 unless the caller gives one),
which the scheduler deduplicates for 24 h. Failed calls raise `grpc.aio.AioRpcError`; its rich
status (ErrorInfo, BadRequest) is read with `grpc_status.rpc_status.from_call`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from common.auth.credentials import ClientCredentials
from common.client.config import channel_options, crawler_addr, scheduler_addr
from common.client.watch import Backoff, RunView, follow_run
from common.jobs import JobSpec, job_to_pb
from common.lifecycle import Closing
from common.proto.ghpulse.v1 import pull_request_service_pb2 as ppb
from common.proto.ghpulse.v1 import runs_pb2, schedules_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.pull_request_service_pb2_grpc import PullRequestServiceStub
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub

if TYPE_CHECKING:  # the async stub types exist only in the generated .pyi stubs
    from common.proto.ghpulse.v1.pull_request_service_pb2_grpc import (
        PullRequestServiceAsyncStub,
    )
    from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceAsyncStub

#: Per-call deadline of unary calls (seconds), retries included.
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Triggered:
    """What TriggerRun did: the run (as the scheduler returned it) and how the request was taken."""

    run: runs_pb2.Run
    #: "created", "joined", "queued" or "idempotent".
    disposition: str
    request_id: str

    @property
    def run_id(self) -> str:
        return self.run.id


def _disposition_name(value: int) -> str:
    return spb.Disposition.Name(value).removeprefix("DISPOSITION_").lower()  # type: ignore[arg-type]


def build_trigger_request(
    job: JobSpec,
    *,
    labels: Mapping[str, str] | None = None,
    request_id: str | None = None,
    on_conflict: int = spb.CONFLICT_POLICY_UNSPECIFIED,
    concurrency_key: str = "",
    max_attempts: int = 0,
) -> spb.TriggerRunRequest:
    """A TriggerRunRequest for `job`, always with a request_id (so a retried call is idempotent)."""
    request = spb.TriggerRunRequest(
        labels=dict(labels or {}),
        request_id=request_id or str(uuid.uuid4()),
        on_conflict=on_conflict,  # type: ignore[arg-type]
        concurrency_key=concurrency_key,
        max_attempts=max_attempts,
    )
    job_to_pb(job, request)
    return request


class GhpulseClient(Closing):
    """An asyncio client of SchedulerService and PullRequestService.

    Channels open lazily, so a client used only for runs never connects to a crawler. Use as
    `async with GhpulseClient(...) as client:` or call `close()`.
    """

    def __init__(
        self,
        scheduler: str | None = None,
        crawler: str | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        service_config: dict[str, Any] | None = None,
        watch_backoff: Backoff | None = None,
        token: str | None = None,
        credentials: ClientCredentials | None = None,
    ) -> None:
        """`token` (else $GHPULSE_TOKEN / $GHPULSE_TOKEN_FILE) is sent as `authorization: Bearer`
        on every call; `credentials` replaces both it and the GHPULSE_TLS* variables."""
        self.credentials = credentials or ClientCredentials.from_env(token)
        self.scheduler_addr = scheduler_addr(scheduler)
        self.crawler_addr = crawler_addr(crawler)
        self.timeout = timeout
        self.watch_backoff = watch_backoff or Backoff()
        self._options = channel_options(service_config)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            self._channels[address] = self.credentials.channel(address, self._options)
        return self._channels[address]

    @property
    def scheduler(self) -> SchedulerServiceAsyncStub:
        """The raw SchedulerService stub (for fields the helpers do not cover)."""
        return SchedulerServiceStub(self._channel(self.scheduler_addr))

    @property
    def pull_requests(self) -> PullRequestServiceAsyncStub:
        """The raw PullRequestService stub."""
        return PullRequestServiceStub(self._channel(self.crawler_addr))

    async def aclose(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()

    # -- runs ------------------------------------------------------------------------------------

    async def trigger(self, job: JobSpec, **options: Any) -> Triggered:
        """Start `job` (`CrawlSpec`, `RecalculateSpec`, `BackfillLinksSpec`, `PluginJobSpec`);
        `options` are those of `build_trigger_request` (labels, request_id, on_conflict, ...)."""
        return await self.trigger_request(build_trigger_request(job, **options))

    async def trigger_request(self, request: spb.TriggerRunRequest) -> Triggered:
        """Send a prepared TriggerRunRequest (a request_id is added if missing)."""
        if not request.request_id:
            request.request_id = str(uuid.uuid4())
        response = await self.scheduler.TriggerRun(request, timeout=self.timeout)
        return Triggered(response.run, _disposition_name(response.disposition), request.request_id)

    def watch(
        self, run_id: str, after_seq: int = 0, *, backoff: Backoff | None = None
    ) -> AsyncIterator[spb.WatchRunResponse]:
        """The run's WatchRun messages until it ends, resuming after disconnects (see
        `common.client.watch.follow_run`)."""
        return follow_run(self.scheduler, run_id, after_seq, backoff=backoff or self.watch_backoff)

    async def wait(self, run_id: str) -> runs_pb2.Run:
        """Follow the run until it ends; its final state from GetRun."""
        view = RunView(run_id)
        async for message in self.watch(run_id):
            view.apply(message)
        return await self.get_run(run_id)

    async def get_run(self, run_id: str) -> runs_pb2.Run:
        response = await self.scheduler.GetRun(
            spb.GetRunRequest(run_id=run_id), timeout=self.timeout
        )
        return response.run

    async def list_runs(
        self,
        *,
        states: Sequence[int] = (),
        jobs: Sequence[int] = (),
        labels: Mapping[str, str] | None = None,
        page_size: int = 50,
        page_token: str = "",
        parent_run_id: str = "",
    ) -> spb.ListRunsResponse:
        """One page of runs, newest first (RunState / JobKind enum values as filters; with
        `parent_run_id`, only the children of that fan-out parent)."""
        request = spb.ListRunsRequest(
            states=list(states),  # type: ignore[arg-type]
            jobs=list(jobs),  # type: ignore[arg-type]
            labels=dict(labels or {}),
            parent_run_id=parent_run_id,
            page_size=page_size,
            page_token=page_token,
        )
        return await self.scheduler.ListRuns(request, timeout=self.timeout)

    async def cancel(self, run_id: str, reason: str = "") -> runs_pb2.Run:
        request = spb.CancelRunRequest(run_id=run_id, reason=reason)
        return (await self.scheduler.CancelRun(request, timeout=self.timeout)).run

    async def retry(self, run_id: str) -> runs_pb2.Run:
        request = spb.RetryRunRequest(run_id=run_id)
        return (await self.scheduler.RetryRun(request, timeout=self.timeout)).run

    async def workers(self) -> spb.ListWorkersResponse:
        return await self.scheduler.ListWorkers(spb.ListWorkersRequest(), timeout=self.timeout)

    # -- pull requests ---------------------------------------------------------------------------

    async def list_pull_requests(
        self,
        repository: str,
        *,
        state: int = ppb.PULL_REQUEST_STATE_UNSPECIFIED,
        page_size: int = 50,
        page_token: str = "",
    ) -> ppb.ListPullRequestsResponse:
        """One page of the repository's pull requests."""
        request = ppb.ListPullRequestsRequest(
            repository=repository,
            state=state,  # type: ignore[arg-type]
            page_size=page_size,
            page_token=page_token,
        )
        return await self.pull_requests.ListPullRequests(request, timeout=self.timeout)

    async def repository_stats(self, repository: str) -> ppb.GetRepositoryStatsResponse:
        """Counts, size classes and cycle-time percentiles of the repository's pull requests."""
        request = ppb.GetRepositoryStatsRequest(repository=repository)
        return await self.pull_requests.GetRepositoryStats(request, timeout=self.timeout)

    # -- schedules -------------------------------------------------------------------------------

    async def create_schedule(
        self, schedule: schedules_pb2.Schedule, schedule_id: str = ""
    ) -> schedules_pb2.Schedule:
        request = spb.CreateScheduleRequest(schedule=schedule, schedule_id=schedule_id)
        return (await self.scheduler.CreateSchedule(request, timeout=self.timeout)).schedule

    async def update_schedule(
        self, schedule: schedules_pb2.Schedule, paths: list[str]
    ) -> schedules_pb2.Schedule:
        """Replace the fields named by `paths` (an UpdateSchedule field mask) of `schedule.id`."""
        request = spb.UpdateScheduleRequest(schedule=schedule)
        request.update_mask.paths.extend(paths)
        return (await self.scheduler.UpdateSchedule(request, timeout=self.timeout)).schedule

    async def list_schedules(
        self, page_size: int = 50, page_token: str = ""
    ) -> spb.ListSchedulesResponse:
        request = spb.ListSchedulesRequest(page_size=page_size, page_token=page_token)
        return await self.scheduler.ListSchedules(request, timeout=self.timeout)

    async def get_schedule(
        self, schedule_id: str, firing_count: int = 20
    ) -> spb.GetScheduleResponse:
        request = spb.GetScheduleRequest(schedule_id=schedule_id, firing_count=firing_count)
        return await self.scheduler.GetSchedule(request, timeout=self.timeout)

    async def pause_schedule(self, schedule_id: str) -> schedules_pb2.Schedule:
        request = spb.PauseScheduleRequest(schedule_id=schedule_id)
        return (await self.scheduler.PauseSchedule(request, timeout=self.timeout)).schedule

    async def resume_schedule(self, schedule_id: str) -> schedules_pb2.Schedule:
        request = spb.ResumeScheduleRequest(schedule_id=schedule_id)
        return (await self.scheduler.ResumeSchedule(request, timeout=self.timeout)).schedule

    async def delete_schedule(self, schedule_id: str) -> None:
        request = spb.DeleteScheduleRequest(schedule_id=schedule_id)
        await self.scheduler.DeleteSchedule(request, timeout=self.timeout)

    async def run_schedule_now(self, schedule_id: str) -> spb.RunScheduleNowResponse:
        """Fire the schedule once now (its overlap policy applies)."""
        request = spb.RunScheduleNowRequest(schedule_id=schedule_id)
        return await self.scheduler.RunScheduleNow(request, timeout=self.timeout)
