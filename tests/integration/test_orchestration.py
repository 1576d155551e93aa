"""The orchestration end to end in one process: real gRPC servers on real ports, real SQLite files,
the real crawler worker running test-only jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from tests.support.cluster import TERMINAL, Cluster, cluster
from tests.support.rpc_errors import details

SUCCEEDED, FAILED, CANCELLED = (
    runs_pb2.RUN_STATE_SUCCEEDED,
    runs_pb2.RUN_STATE_FAILED,
    runs_pb2.RUN_STATE_CANCELLED,
)


@pytest.fixture
async def c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    # No test here waits for a lease to end: leases and graces of seconds, longer than the event
    # loop ever stalls on a loaded machine (a 5 s stall once made a crawler drop its stream, and
    # the run then used an attempt it should not have).
    async with cluster(
        tmp_path, db=scheduler_db_url, lease_ttl=30.0, reconnect_grace=30.0
    ) as running:
        yield running


def events(messages: list[spb.WatchRunResponse]) -> list[runs_pb2.RunEvent]:
    return [m.event for m in messages if m.HasField("event")]


async def test_trigger_and_watch_to_success_with_step_progress(c: Cluster) -> None:
    await c.add_crawler()
    response = await c.trigger("test/plain")
    assert response.disposition == spb.DISPOSITION_CREATED
    messages = await c.watch(response.run.id)
    assert messages[0].HasField("snapshot")
    stream = events(messages)
    seqs = [e.seq for e in stream]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    started = [e.step_started.step for e in stream if e.HasField("step_started")]
    assert started == ["alpha", "beta", "gamma"]
    # Progress may be coalesced (latest wins), but each step's last progress arrives.
    progress = {
        e.step_progress.step: e.step_progress for e in stream if e.HasField("step_progress")
    }
    assert {name: (p.current, p.total) for name, p in progress.items()} == {
        "alpha": (2, 2),
        "beta": (2, 2),
        "gamma": (2, 2),
    }
    last = stream[-1]
    assert last.state_changed.state == SUCCEEDED
    run = (await c.stub.GetRun(spb.GetRunRequest(run_id=response.run.id))).run
    assert run.state == SUCCEEDED
    assert [s.name for s in run.steps] == ["alpha", "beta", "gamma"]
    assert all(s.state == runs_pb2.STEP_STATE_SUCCEEDED and s.current == 2 for s in run.steps)
    assert run.output["ran_in_attempt"] == 1
    assert run.last_seq == last.seq


async def test_join_queue_and_reject(c: Cluster) -> None:
    first = await c.trigger("test/gated")
    joined = await c.trigger("test/gated")
    assert (joined.disposition, joined.run.id) == (spb.DISPOSITION_JOINED, first.run.id)
    queued = await c.trigger("test/gated", on_conflict=spb.CONFLICT_POLICY_QUEUE)
    assert queued.disposition == spb.DISPOSITION_QUEUED
    assert queued.run.state == runs_pb2.RUN_STATE_QUEUED
    joined_queue = await c.trigger("test/gated", on_conflict=spb.CONFLICT_POLICY_QUEUE)
    assert (joined_queue.disposition, joined_queue.run.id) == (
        spb.DISPOSITION_JOINED,
        queued.run.id,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await c.trigger("test/gated", on_conflict=spb.CONFLICT_POLICY_REJECT)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    error_info = details(info.value)["ErrorInfo"]
    assert error_info.metadata["active_run_id"] == first.run.id  # type: ignore[attr-defined]

    # The queued run starts when the active one ends.
    await c.add_crawler()
    c.open_gate(first.run.id)
    assert (await c.wait_for_state(first.run.id, *TERMINAL)).state == SUCCEEDED
    c.open_gate(queued.run.id)
    assert (await c.wait_for_state(queued.run.id, *TERMINAL)).state == SUCCEEDED


async def test_request_id_idempotency(c: Cluster) -> None:
    first = await c.trigger("test/gated", request_id="req-1")
    again = await c.trigger("test/gated", request_id="req-1")
    assert (again.disposition, again.run.id) == (spb.DISPOSITION_IDEMPOTENT, first.run.id)
    joined = await c.trigger("test/gated", request_id="req-2")
    assert joined.disposition == spb.DISPOSITION_JOINED
    joined_again = await c.trigger("test/gated", request_id="req-2")
    assert (joined_again.disposition, joined_again.run.id) == (
        spb.DISPOSITION_IDEMPOTENT,
        first.run.id,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await c.trigger("test/other", request_id="req-1")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = details(info.value)["BadRequest"].field_violations  # type: ignore[attr-defined]
    assert [v.field for v in violations] == ["request_id"]


async def test_resume_watch_after_seq_has_no_gap_and_no_duplicate(c: Cluster) -> None:
    await c.add_crawler()
    run_id = (await c.trigger("test/plain")).run.id
    full = events(await c.watch(run_id))
    middle = full[len(full) // 2].seq
    resumed = await c.watch(run_id, after_seq=middle)
    assert resumed[0].HasField("snapshot")
    assert resumed[0].snapshot.state == SUCCEEDED
    assert [e.seq for e in events(resumed)] == [e.seq for e in full if e.seq > middle]
    # Watching a finished run from its last event: the snapshot, then the stream closes.
    tail = await c.watch(run_id, after_seq=full[-1].seq)
    assert len(tail) == 1 and tail[0].HasField("snapshot")


async def test_watch_of_a_dropped_stream_resumes_live(c: Cluster) -> None:
    await c.add_crawler()
    run_id = (await c.trigger("test/gated")).run.id
    await c.wait_for_step(run_id, "beta")
    call = c.stub.WatchRun(spb.WatchRunRequest(run_id=run_id))
    seen = [m async for m in _take(call, 3)]
    call.cancel()
    last_seq = seen[-1].event.seq
    c.open_gate(run_id)
    rest = events(await c.watch(run_id, after_seq=last_seq))
    assert rest[0].seq == last_seq + 1
    assert rest[-1].state_changed.state == SUCCEEDED


async def _take(call: object, count: int) -> AsyncIterator[spb.WatchRunResponse]:
    taken = 0
    async for message in call:  # type: ignore[attr-defined]
        yield message
        taken += 1
        if taken == count:
            return


async def test_unknown_run_is_not_found(c: Cluster) -> None:
    for call in (
        c.stub.GetRun(spb.GetRunRequest(run_id="run_nope")),
        c.stub.CancelRun(spb.CancelRunRequest(run_id="run_nope")),
        c.stub.RetryRun(spb.RetryRunRequest(run_id="run_nope")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await c.watch("run_nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_cancel_pending_queued_and_running_runs(c: Cluster) -> None:
    pending = await c.trigger("test/a")
    cancelled = await c.stub.CancelRun(spb.CancelRunRequest(run_id=pending.run.id, reason="no"))
    assert cancelled.run.state == CANCELLED

    running = await c.trigger("test/gated")
    queued = await c.trigger("test/gated", on_conflict=spb.CONFLICT_POLICY_QUEUE)
    assert (await c.stub.CancelRun(spb.CancelRunRequest(run_id=queued.run.id))).run.state == (
        CANCELLED
    )
    await c.add_crawler()
    await c.wait_for_step(running.run.id, "beta")
    answer = await c.stub.CancelRun(spb.CancelRunRequest(run_id=running.run.id))
    assert answer.run.state == runs_pb2.RUN_STATE_RUNNING and answer.run.cancel_requested
    final = await c.wait_for_state(running.run.id, *TERMINAL)
    assert final.state == CANCELLED
    assert [s.state for s in final.steps][-1] == runs_pb2.STEP_STATE_CANCELLED
    # Cancelling again is fine; a succeeded run cannot be cancelled.
    assert (await c.stub.CancelRun(spb.CancelRunRequest(run_id=running.run.id))).run.state == (
        CANCELLED
    )
    done = await c.trigger("test/plain")
    await c.wait_for_state(done.run.id, *TERMINAL)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await c.stub.CancelRun(spb.CancelRunRequest(run_id=done.run.id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_transient_failure_retries_from_checkpoints(c: Cluster) -> None:
    await c.add_crawler()
    run_id = (await c.trigger("test/fail-once")).run.id
    final = await c.wait_for_state(run_id, *TERMINAL)
    assert final.state == SUCCEEDED
    assert final.attempt == 2
    steps = {s.name: s for s in final.steps}
    assert steps["alpha"].attempt == 1  # checkpoint reused, not re-run
    assert steps["beta"].attempt == 2 and steps["gamma"].attempt == 2
    log = events(await c.watch(run_id))
    assert [e.step_started.step for e in log if e.HasField("step_started")] == [
        "alpha",
        "beta",
        "beta",
        "gamma",
    ]


async def test_permanent_failure_then_retry_run(c: Cluster) -> None:
    await c.add_crawler()
    run_id = (await c.trigger("test/fail")).run.id
    failed = await c.wait_for_state(run_id, *TERMINAL)
    assert failed.state == FAILED and failed.attempt == 1
    assert (failed.error.code, failed.error.retryable) == ("TEST_PERMANENT", False)
    retried = await c.stub.RetryRun(spb.RetryRunRequest(run_id=run_id))
    assert retried.run.attempt == 2
    again = await c.wait_for_state(run_id, *TERMINAL)
    assert again.state == FAILED and again.attempt == 2
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await c.stub.RetryRun(spb.RetryRunRequest(run_id=(await c.trigger("test/a")).run.id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_deadline_exceeded(c: Cluster) -> None:
    await c.add_crawler()
    deadline = duration_pb2.Duration()
    deadline.FromTimedelta(timedelta(milliseconds=300))
    run_id = (await c.trigger("test/gated", deadline=deadline)).run.id
    final = await c.wait_for_state(run_id, *TERMINAL)
    assert final.state == FAILED
    assert final.error.code == "DEADLINE_EXCEEDED"


@pytest.mark.parametrize(
    ("request_fields", "fields"),
    [
        ({}, ["job"]),
        ({"crawl": runs_pb2.CrawlJob()}, ["crawl"]),
        ({"crawl": runs_pb2.CrawlJob(repositories=["nope", "a/b"])}, ["crawl.repositories[0]"]),
        ({"recalculate": runs_pb2.RecalculateJob(repositories=["a/b"])}, ["recalculate.steps"]),
        (
            {"recalculate": runs_pb2.RecalculateJob(repositories=["a/b"], steps=["fetch"])},
            ["recalculate.steps"],
        ),
        (
            {"backfill_links": runs_pb2.BackfillLinksJob(repository="x")},
            ["backfill_links.repository"],
        ),
        (
            {"crawl": runs_pb2.CrawlJob(repositories=["a/b"]), "labels": {"Bad Key": "v"}},
            ["labels[Bad Key]"],
        ),
        (
            {"crawl": runs_pb2.CrawlJob(repositories=["a/b"]), "max_attempts": 1000},
            ["max_attempts"],
        ),
        ({"crawl": runs_pb2.CrawlJob(repositories=["a/b"]), "on_conflict": 42}, ["on_conflict"]),
    ],
)
async def test_bad_input_is_invalid_argument_with_field_violations(
    c: Cluster, request_fields: dict[str, object], fields: list[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await c.stub.TriggerRun(spb.TriggerRunRequest(**request_fields))  # type: ignore[arg-type]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = details(info.value)["BadRequest"].field_violations  # type: ignore[attr-defined]
    assert [v.field for v in violations] == fields
    health = health_pb2_grpc.HealthStub(c.channel)
    answer = await health.Check(health_pb2.HealthCheckRequest())
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_list_runs_filters_and_pages(c: Cluster) -> None:
    ids = [
        (await c.trigger(f"test/r{i}", labels={"team": "x" if i % 2 else "y"})).run.id
        for i in range(5)
    ]
    page = await c.stub.ListRuns(spb.ListRunsRequest(page_size=2))
    assert [r.id for r in page.runs] == ids[::-1][:2]
    second = await c.stub.ListRuns(
        spb.ListRunsRequest(page_size=2, page_token=page.next_page_token)
    )
    assert [r.id for r in second.runs] == ids[::-1][2:4]
    team = await c.stub.ListRuns(spb.ListRunsRequest(labels={"team": "x"}))
    assert [r.id for r in team.runs] == [ids[3], ids[1]]
    pending = await c.stub.ListRuns(spb.ListRunsRequest(states=[runs_pb2.RUN_STATE_PENDING]))
    assert len(pending.runs) == 5
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await c.stub.ListRuns(spb.ListRunsRequest(page_token="garbage!"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_workers(c: Cluster) -> None:
    await c.add_crawler("crawler-a", slots=3)
    run_id = (await c.trigger("test/gated")).run.id
    await c.wait_for_step(run_id, "beta")
    workers = (await c.stub.ListWorkers(spb.ListWorkersRequest())).workers
    assert [(w.id, w.slots, w.free_slots, list(w.run_ids)) for w in workers] == [
        ("crawler-a", 3, 2, [run_id])
    ]
    c.open_gate(run_id)
    await c.wait_for_state(run_id, *TERMINAL)


async def test_graceful_crawler_stop_hands_back_without_using_an_attempt(c: Cluster) -> None:
    first = await c.add_crawler("crawler-a")
    run_id = (await c.trigger("test/gated", max_attempts=1)).run.id
    await c.wait_for_step(run_id, "beta")
    await c.stop_crawler(first)
    await c.add_crawler("crawler-b")
    c.open_gate(run_id)
    final = await c.wait_for_state(run_id, *TERMINAL)
    assert final.state == SUCCEEDED
    assert final.attempt == 2
    assert final.worker_id == "" and {s.name: s.attempt for s in final.steps}["alpha"] == 1


async def test_many_concurrent_triggers_give_one_run(c: Cluster) -> None:
    answers = await asyncio.gather(
        *(c.trigger("test/same", on_conflict=spb.CONFLICT_POLICY_JOIN) for _ in range(100))
    )
    assert len({a.run.id for a in answers}) == 1
    assert sorted(a.disposition for a in answers).count(spb.DISPOSITION_CREATED) == 1
