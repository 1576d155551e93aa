"""Plugin jobs end to end: a real scheduler (SQLite and PostgreSQL) and a crawler that loaded
`bench/noop_plugin.py` through its plugins setting (GHPULSE_CRAWLER_PLUGINS), driven over gRPC:
trigger, dispatch, execution, ListRuns/GetRun, schedules, validation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from common import pb
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1 import schedules_pb2 as sch
from tests.support.cluster import TERMINAL, Cluster, cluster

#: The test jobs (which replace `crawl`) and the noop plugin job, loaded as a user would.
PLUGINS = "tests.support.jobs:register,bench.noop_plugin:register"
PARAMS = {"n": 3, "name": "weekly", "nested": {"ratio": 0.5, "items": [1, "a", None, True]}}


@pytest.fixture
async def c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(tmp_path, db=scheduler_db_url, schedule_poll=0.2) as running:
        await running.add_crawler(plugins=PLUGINS)
        yield running


def violations(error: grpc.aio.AioRpcError) -> set[str]:
    """The fields named by the BadRequest detail of `error`."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad) for detail in status.details)
    return {v.field for v in bad.field_violations}


def plugin(kind: str, params: dict[str, object] | None = None) -> runs_pb2.PluginJob:
    return runs_pb2.PluginJob(kind=kind, params=pb.struct(params or {}))


async def finished(c: Cluster, run_id: str) -> runs_pb2.Run:
    return await c.wait_for_state(run_id, *TERMINAL)


async def test_a_plugin_job_runs_on_the_crawler_that_loaded_it(c: Cluster) -> None:
    request = spb.TriggerRunRequest(plugin=plugin("noop", PARAMS), labels={"team": "core"})
    created = (await c.stub.TriggerRun(request)).run

    run = await finished(c, created.id)

    assert run.state == runs_pb2.RUN_STATE_SUCCEEDED
    assert run.job_kind == runs_pb2.JOB_KIND_PLUGIN
    assert run.WhichOneof("job") == "plugin"
    assert run.plugin.kind == "noop"
    assert pb.from_struct(run.plugin.params) == PARAMS
    assert [(s.name, s.state) for s in run.steps] == [("noop", runs_pb2.STEP_STATE_SUCCEEDED)]
    assert pb.from_struct(run.output) == {"params": PARAMS}
    assert run.concurrency_key.startswith("plugin:noop:")


async def test_list_and_get_runs_know_plugin_jobs(c: Cluster) -> None:
    noop = (await c.stub.TriggerRun(spb.TriggerRunRequest(plugin=plugin("noop")))).run
    crawl = (await c.trigger("octo/a")).run
    for run_id in (noop.id, crawl.id):
        await finished(c, run_id)

    plugins = await c.stub.ListRuns(spb.ListRunsRequest(jobs=[runs_pb2.JOB_KIND_PLUGIN]))
    crawls = await c.stub.ListRuns(spb.ListRunsRequest(jobs=[runs_pb2.JOB_KIND_CRAWL]))
    got = (await c.stub.GetRun(spb.GetRunRequest(run_id=noop.id))).run

    assert [r.id for r in plugins.runs] == [noop.id]
    assert [r.id for r in crawls.runs] == [crawl.id]
    assert plugins.runs[0].plugin == got.plugin == plugin("noop")
    assert got.concurrency_key == "plugin:noop"


async def test_a_plugin_job_no_crawler_has_fails_without_retrying(c: Cluster) -> None:
    request = spb.TriggerRunRequest(plugin=plugin("absent"), max_attempts=3)
    created = (await c.stub.TriggerRun(request)).run

    run = await finished(c, created.id)

    assert run.state == runs_pb2.RUN_STATE_FAILED
    assert (run.error.code, run.error.retryable, run.attempt) == ("UNKNOWN_JOB", False, 1)
    assert "'absent'" in run.error.message


@pytest.mark.parametrize(
    ("job", "field"),
    [
        (plugin("crawl"), "plugin.kind"),
        (plugin("Not A Name"), "plugin.kind"),
        (plugin("noop", {"bad": "nul\x00"}), "plugin.params"),
        (plugin("noop", {"x": float("nan")}), "plugin.params"),
        (plugin("noop", {"big": "x" * 20_000}), "plugin.params"),
    ],
)
async def test_invalid_plugin_jobs_are_rejected(
    c: Cluster, job: runs_pb2.PluginJob, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await c.stub.TriggerRun(spb.TriggerRunRequest(plugin=job))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == {field}


async def test_schedules_store_and_fire_plugin_jobs(c: Cluster) -> None:
    template = sch.ScheduleTemplate(plugin=plugin("noop", PARAMS), labels={"team": "core"})
    schedule = sch.Schedule(template=template, paused=True)
    request = spb.CreateScheduleRequest(schedule_id="noop-hourly", schedule=schedule)
    created = (await c.stub.CreateSchedule(request)).schedule

    got = (await c.stub.GetSchedule(spb.GetScheduleRequest(schedule_id="noop-hourly"))).schedule
    fired = await c.stub.RunScheduleNow(spb.RunScheduleNowRequest(schedule_id="noop-hourly"))
    run = await finished(c, fired.run.id)

    assert created.template == got.template == template
    assert run.state == runs_pb2.RUN_STATE_SUCCEEDED
    assert (run.plugin, run.schedule_id) == (template.plugin, "noop-hourly")


async def test_schedule_updates_validate_plugin_jobs(c: Cluster) -> None:
    crawl = sch.ScheduleTemplate(crawl=runs_pb2.CrawlJob(repositories=["octo/a"]))
    create = spb.CreateScheduleRequest(schedule_id="s", schedule=sch.Schedule(template=crawl))
    await c.stub.CreateSchedule(create)
    mask = field_mask_pb2.FieldMask(paths=["template.job"])

    def update(job: runs_pb2.PluginJob) -> spb.UpdateScheduleRequest:
        template = sch.ScheduleTemplate(plugin=job)
        changed = sch.Schedule(id="s", template=template)
        return spb.UpdateScheduleRequest(schedule=changed, update_mask=mask)

    updated = (await c.stub.UpdateSchedule(update(plugin("noop", {"n": 1})))).schedule
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await c.stub.UpdateSchedule(update(plugin("recalculate")))

    assert updated.template.plugin == plugin("noop", {"n": 1})
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == {"schedule.template.plugin.kind"}
