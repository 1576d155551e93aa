"""Authentication and authorization over real servers: every RPC of the three services refuses a
call without a token, scopes decide who may do what, label-scoped tokens see only their runs, and
who triggered, cancelled, retried or changed something is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.auth.scopes import METHOD_SCOPES
from common.proto.ghpulse.v1 import (
    pull_request_service_pb2,
    runs_pb2,
    schedules_pb2,
    worker_service_pb2,
)
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.pull_request_service_pb2_grpc import PullRequestServiceStub
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from tests.support.auth import Tokens, make_tokens
from tests.support.cluster import Cluster, cluster
from tests.support.rpc_errors import details

SERVICES = [
    spb.DESCRIPTOR.services_by_name["SchedulerService"],
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"],
    pull_request_service_pb2.DESCRIPTOR.services_by_name["PullRequestService"],
]
CRAWL = runs_pb2.CrawlJob(repositories=["octo/a"])
GATED = runs_pb2.CrawlJob(repositories=["test/gated"])


def all_methods() -> list[tuple[str, Any]]:
    return [
        (f"/{service.full_name}/{method.name}", method)
        for service in SERVICES
        for method in service.methods
    ]


@pytest.fixture
async def secured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> AsyncIterator[tuple[Cluster, Tokens]]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    keys = make_tokens(tmp_path)
    async with cluster(tmp_path, db=scheduler_db_url, auth_file=str(keys.path)) as running:
        await running.channel.close(None)
        running.channel = keys.channel(running.address, "admin")
        running.stub = SchedulerServiceStub(running.channel)
        await running.add_crawler(
            "crawler-1", auth_file=str(keys.path), token=keys.plain["crawlers"]
        )
        yield running, keys


async def _code(call: Any) -> grpc.StatusCode:
    try:
        response = call
        if hasattr(response, "__aiter__"):
            async for _ in response:
                pass
        else:
            await response
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _drain(call: Any, streaming: bool) -> None:
    if streaming:
        async for _ in call:
            pass
    else:
        await call


def test_every_method_has_a_scope() -> None:
    assert sorted(name for name, _ in all_methods()) == sorted(METHOD_SCOPES)


async def test_every_method_refuses_a_call_without_a_token(
    secured: tuple[Cluster, Tokens],
) -> None:
    c, keys = secured
    crawler = c.crawlers[0].address
    for name, method in all_methods():
        address = crawler if "PullRequestService" in name else c.address
        async with keys.channel(address, None) as channel:
            request = descriptor_pb2.FileDescriptorProto()  # any bytes: auth comes first
            kind = (
                "stream_stream"
                if method.client_streaming
                else ("unary_stream" if method.server_streaming else "unary_unary")
            )
            callable_ = getattr(channel, kind)(
                name,
                request_serializer=lambda _m: b"",
                response_deserializer=lambda data: data,
            )
            # A client stream sends nothing: the refusal may come before a first message could be
            # written, and a write racing it fails INTERNAL on the client side, not on the server.
            call = callable_(iter([])) if method.client_streaming else callable_(request)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _drain(call, method.server_streaming)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
            info = details(refused.value)["ErrorInfo"]
            assert info.reason == "UNAUTHENTICATED"  # type: ignore[attr-defined]


async def test_a_bad_token_is_unauthenticated_and_health_stays_open(
    secured: tuple[Cluster, Tokens],
) -> None:
    c, _keys = secured
    from common.auth.credentials import ClientCredentials

    async with ClientCredentials(token="ghpt_not-a-token").channel(c.address) as channel:
        stub = SchedulerServiceStub(channel)
        assert await _code(stub.ListRuns(spb.ListRunsRequest())) == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_scopes(secured: tuple[Cluster, Tokens]) -> None:
    c, keys = secured
    async with keys.channel(c.address, "reader") as channel:
        reader = SchedulerServiceStub(channel)
        assert await _code(reader.ListRuns(spb.ListRunsRequest())) == grpc.StatusCode.OK
        trigger = reader.TriggerRun(spb.TriggerRunRequest(crawl=CRAWL))
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await trigger
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        info = details(denied.value)["ErrorInfo"]
        assert info.reason == "PERMISSION_DENIED"  # type: ignore[attr-defined]
        assert info.metadata["required"] == "runs:write or worker"  # type: ignore[attr-defined]
        assert await _code(reader.ListWorkers(spb.ListWorkersRequest())) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        create = reader.CreateSchedule(spb.CreateScheduleRequest(schedule=_schedule()))
        assert await _code(create) == grpc.StatusCode.PERMISSION_DENIED
    async with keys.channel(c.address, "crawlers") as channel:
        worker = SchedulerServiceStub(channel)
        crawl = worker.TriggerRun(spb.TriggerRunRequest(crawl=CRAWL))
        assert await _code(crawl) == grpc.StatusCode.PERMISSION_DENIED
        backfill = runs_pb2.BackfillLinksJob(repository="octo/a")
        response = await worker.TriggerRun(spb.TriggerRunRequest(backfill_links=backfill))
        assert response.run.trigger == runs_pb2.TRIGGER_BACKFILL
        assert response.run.triggered_by == "crawlers"
    async with keys.channel(c.crawlers[0].address, "reader") as channel:
        queries = PullRequestServiceStub(channel)
        request = pull_request_service_pb2.ListPullRequestsRequest(repository="octo/a")
        # Let in: the repository was never crawled.
        assert await _code(queries.ListPullRequests(request)) == grpc.StatusCode.NOT_FOUND


def _schedule(**labels: str) -> schedules_pb2.Schedule:
    template = schedules_pb2.ScheduleTemplate(crawl=CRAWL, labels=labels)
    return schedules_pb2.Schedule(cron="0 3 * * *", template=template)


async def test_who_did_what_is_recorded(secured: tuple[Cluster, Tokens]) -> None:
    c, keys = secured
    async with keys.channel(c.address, "writer") as channel:
        writer = SchedulerServiceStub(channel)
        run = (await writer.TriggerRun(spb.TriggerRunRequest(crawl=GATED))).run
        assert (run.triggered_by, run.trigger) == ("writer", runs_pb2.TRIGGER_API)
        cancelled = (await writer.CancelRun(spb.CancelRunRequest(run_id=run.id))).run
        assert cancelled.cancelled_by == "writer"
    async with keys.channel(c.address, "scheduler-ops") as channel:
        ops = SchedulerServiceStub(channel)
        request = spb.CreateScheduleRequest(schedule_id="nightly", schedule=_schedule())
        created = (await ops.CreateSchedule(request)).schedule
        assert (created.created_by, created.updated_by) == ("scheduler-ops", "scheduler-ops")
        paused = await c.stub.PauseSchedule(spb.PauseScheduleRequest(schedule_id="nightly"))
        assert paused.schedule.updated_by == "admin"
        fired = await ops.RunScheduleNow(spb.RunScheduleNowRequest(schedule_id="nightly"))
        assert fired.run.triggered_by == "schedule:nightly"


async def test_a_revoked_token_stops_working_without_restart(
    secured: tuple[Cluster, Tokens],
) -> None:
    from common.auth import tokens

    c, keys = secured
    async with keys.channel(c.address, "reader") as channel:
        reader = SchedulerServiceStub(channel)
        assert await _code(reader.ListRuns(spb.ListRunsRequest())) == grpc.StatusCode.OK
        assert tokens.revoke(keys.path, "reader")
        assert await _code(reader.ListRuns(spb.ListRunsRequest())) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        again = tokens.create(keys.path, "reader", ["runs:read"])
    async with keys.channel(c.address, None) as channel:
        from common.auth.credentials import ClientCredentials

        async with ClientCredentials(token=again).channel(c.address) as renewed:
            stub = SchedulerServiceStub(renewed)
            assert await _code(stub.ListRuns(spb.ListRunsRequest())) == grpc.StatusCode.OK


async def test_label_scoped_tokens_see_and_trigger_only_their_runs(
    secured: tuple[Cluster, Tokens],
) -> None:
    c, keys = secured
    async with (
        keys.channel(c.address, "core") as core_channel,
        keys.channel(c.address, "web") as web_channel,
    ):
        core, web = SchedulerServiceStub(core_channel), SchedulerServiceStub(web_channel)
        theirs = (await web.TriggerRun(spb.TriggerRunRequest(crawl=GATED))).run
        # Joining the key's active run of another team would show it: NOT_FOUND, as if absent.
        assert await _code(core.TriggerRun(spb.TriggerRunRequest(crawl=GATED))) == (
            grpc.StatusCode.NOT_FOUND
        )
        reject = spb.TriggerRunRequest(crawl=GATED, on_conflict=spb.CONFLICT_POLICY_REJECT)
        assert await _code(core.TriggerRun(reject)) == grpc.StatusCode.NOT_FOUND
        assert await _code(web.TriggerRun(reject)) == grpc.StatusCode.ALREADY_EXISTS
        own = runs_pb2.CrawlJob(repositories=["test/gated", "core/x"])
        mine = (await core.TriggerRun(spb.TriggerRunRequest(crawl=own))).run
        assert dict(mine.labels) == {"team": "core"}
        wrong = spb.TriggerRunRequest(crawl=own, labels={"team": "web"})
        assert await _code(core.TriggerRun(wrong)) == grpc.StatusCode.PERMISSION_DENIED
        listed = (await core.ListRuns(spb.ListRunsRequest())).runs
        # The crawl of two repositories fanned out: its two children carry its labels.
        assert [run.id for run in listed if not run.parent_run_id] == [mine.id]
        assert [run.parent_run_id for run in listed if run.parent_run_id] == [mine.id] * 2
        assert all(dict(run.labels) == {"team": "core"} for run in listed)
        filtered = await core.ListRuns(spb.ListRunsRequest(labels={"team": "web"}))
        assert list(filtered.runs) == []
        for call in (
            core.GetRun(spb.GetRunRequest(run_id=theirs.id)),
            core.CancelRun(spb.CancelRunRequest(run_id=theirs.id)),
            core.RetryRun(spb.RetryRunRequest(run_id=theirs.id)),
            core.WatchRun(spb.WatchRunRequest(run_id=theirs.id)),
        ):
            assert await _code(call) == grpc.StatusCode.NOT_FOUND
        assert (await web.GetRun(spb.GetRunRequest(run_id=theirs.id))).run.id == theirs.id
        created = await core.CreateSchedule(
            spb.CreateScheduleRequest(schedule_id="core-nightly", schedule=_schedule())
        )
        assert dict(created.schedule.template.labels) == {"team": "core"}
        await c.stub.CreateSchedule(
            spb.CreateScheduleRequest(schedule_id="web-nightly", schedule=_schedule(team="web"))
        )
        listed_schedules = (await core.ListSchedules(spb.ListSchedulesRequest())).schedules
        assert [s.id for s in listed_schedules] == ["core-nightly"]
        get = core.GetSchedule(spb.GetScheduleRequest(schedule_id="web-nightly"))
        assert await _code(get) == grpc.StatusCode.NOT_FOUND
    c.open_gate(mine.id)
    c.open_gate(theirs.id)


async def test_trigger_and_schedule_id_are_set_by_the_server(
    secured: tuple[Cluster, Tokens],
) -> None:
    c, _keys = secured
    spoofed = spb.TriggerRunRequest(
        crawl=CRAWL, trigger=runs_pb2.TRIGGER_SCHEDULE, schedule_id="nightly"
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await c.stub.TriggerRun(spoofed)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [v.field for v in details(refused.value)["BadRequest"].field_violations]  # type: ignore[attr-defined]
    assert fields == ["trigger", "schedule_id"]
    claimed = spb.TriggerRunRequest(crawl=CRAWL, trigger=runs_pb2.TRIGGER_BACKFILL)
    run = (await c.stub.TriggerRun(claimed)).run
    assert run.trigger == runs_pb2.TRIGGER_API
