"""Fuzzing every RPC of the three services over real servers with generated messages, valid-ish
and hostile (and bytes that are not protobuf at all): no call is ever INTERNAL or UNKNOWN, the
servers stay healthy, and the run store's invariants hold afterwards (one active run per
concurrency key, contiguous event seqs). Derandomized, so the normal suite never flakes; set
GHPULSE_FUZZ_EXAMPLES to explore more (and randomly)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from common import db
from common.auth.credentials import TOKEN_ENV
from common.proto.ghpulse.v1 import pull_request_service_pb2 as ppb
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1 import worker_service_pb2 as wpb
from tests.support.auth import Tokens, make_tokens
from tests.support.fuzz import message
from tests.support.threaded import threaded_cluster

#: The services under test run in this process (threads): any of their libraries' use of the
#: `random` module can land while Hypothesis draws an example, which it reports as if the
#: strategy had used `random` (ours do not; the services' own jitter has generators of its own).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:"
    "hypothesis.errors.HypothesisDeprecationWarning"
)

EXPLORE = int(os.environ.get("GHPULSE_FUZZ_EXAMPLES", "0"))
CLIENT_EXAMPLES = EXPLORE or 2000
STREAM_EXAMPLES = max(EXPLORE // 5, 200)
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
UNARY_DEADLINE = 30.0
STREAM_DEADLINE = 5.0
SERVICES = [
    spb.DESCRIPTOR.services_by_name["SchedulerService"],
    ppb.DESCRIPTOR.services_by_name["PullRequestService"],
]
#: Known ids, so that some calls reach existing runs and schedules.
POOL = ["fuzz-nightly", "fuzz-hourly", "sch-unknown", "run_unknown"]


def _settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        derandomize=not EXPLORE,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


class Target:
    """The servers under fuzz, reached with blocking stubs carrying an admin token."""

    def __init__(self, scheduler: str, crawler: str, keys: Tokens) -> None:
        metadata = (("authorization", f"Bearer {keys.plain['admin']}"),)
        self.metadata = metadata
        self.channels = {
            "scheduler": grpc.insecure_channel(scheduler),
            "crawler": grpc.insecure_channel(crawler),
        }

    def channel(self, service: str) -> grpc.Channel:
        return self.channels["crawler" if "PullRequest" in service else "scheduler"]

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


@pytest.fixture
def target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> Iterator[tuple[Target, str]]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    keys = make_tokens(tmp_path)
    crawler = {"auth_file": str(keys.path), "token": keys.plain["crawlers"], "slots": 4}
    with threaded_cluster(
        tmp_path, crawler, db=scheduler_db_url, auth_file=str(keys.path), max_attempts=2
    ) as (running, _loop):
        fuzzed = Target(running.address, running.crawlers[0].address, keys)
        _seed(fuzzed)
        try:
            yield fuzzed, scheduler_db_url
            _assert_healthy(fuzzed)
        finally:
            fuzzed.close()
    _assert_invariants(scheduler_db_url)


def _seed(target: Target) -> None:
    """A few runs and schedules for the generated ids to hit."""
    from common.proto.ghpulse.v1 import runs_pb2, schedules_pb2
    from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub

    stub = SchedulerServiceStub(target.channel("scheduler"))
    for repository in ("octo/a", "test/gated", "test/fail"):
        crawl = runs_pb2.CrawlJob(repositories=[repository])
        run = stub.TriggerRun(spb.TriggerRunRequest(crawl=crawl), metadata=target.metadata).run
        POOL.append(run.id)
    for schedule_id in ("fuzz-nightly", "fuzz-hourly"):
        template = schedules_pb2.ScheduleTemplate(crawl=runs_pb2.CrawlJob(repositories=["o/r"]))
        schedule = schedules_pb2.Schedule(cron="0 3 * * *", template=template)
        request = spb.CreateScheduleRequest(schedule_id=schedule_id, schedule=schedule)
        stub.CreateSchedule(request, metadata=target.metadata)


def _methods() -> list[tuple[str, Any]]:
    return [(service.full_name, method) for service in SERVICES for method in service.methods]


def _well_formed() -> dict[str, st.SearchStrategy[Message]]:
    """Requests that pass validation, so the fuzz also drives the store, the dispatcher and the
    schedules (conflicts, idempotency, queues, cancels of running runs...)."""
    from common.proto.ghpulse.v1 import runs_pb2, schedules_pb2

    repositories = st.lists(
        st.sampled_from(["octo/a", "octo/b", "test/gated", "test/fail", "test/fail-once"]),
        min_size=1,
        max_size=2,
    )
    crawl = st.builds(lambda r: runs_pb2.CrawlJob(repositories=r), repositories)
    labels = st.dictionaries(st.sampled_from(["team", "env"]), st.sampled_from(["a", "b"]))
    trigger = st.builds(
        lambda job, labels, policy, request_id, attempts: spb.TriggerRunRequest(
            crawl=job,
            labels=labels,
            on_conflict=policy,
            request_id=request_id,
            max_attempts=attempts,
        ),
        crawl,
        labels,
        st.sampled_from([0, 1, 2, 3]),
        st.sampled_from(["", "", "fuzz-req-1", "fuzz-req-2"]),
        st.integers(0, 3),
    )
    schedule = st.builds(
        lambda cron, job, overlap, paused: schedules_pb2.Schedule(
            cron=cron,
            template=schedules_pb2.ScheduleTemplate(crawl=job),
            overlap=overlap,
            paused=paused,
        ),
        st.sampled_from(["0 3 * * *", "*/5 * * * *", "30 * * * 1-5"]),
        crawl,
        st.sampled_from([0, 1, 2]),
        st.booleans(),
    )
    ids = st.sampled_from(["fuzz-nightly", "fuzz-hourly", "fuzz-new"])
    runs = st.sampled_from(POOL)
    return {
        "TriggerRun": trigger,
        "CreateSchedule": st.builds(
            lambda i, s: spb.CreateScheduleRequest(schedule_id=i, schedule=s), ids, schedule
        ),
        "RunScheduleNow": st.builds(lambda i: spb.RunScheduleNowRequest(schedule_id=i), ids),
        "PauseSchedule": st.builds(lambda i: spb.PauseScheduleRequest(schedule_id=i), ids),
        "ResumeSchedule": st.builds(lambda i: spb.ResumeScheduleRequest(schedule_id=i), ids),
        "CancelRun": st.builds(lambda r: spb.CancelRunRequest(run_id=r), runs),
        "RetryRun": st.builds(lambda r: spb.RetryRunRequest(run_id=r), runs),
        "GetRun": st.builds(lambda r: spb.GetRunRequest(run_id=r), runs),
        "ListRuns": st.builds(
            lambda size, lab: spb.ListRunsRequest(page_size=size, labels=lab),
            st.integers(0, 5),
            labels,
        ),
    }


WELL_FORMED = _well_formed()


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, Any, bytes]:
    """A method and its request's bytes: a well-formed request, a generated message (valid-ish
    or hostile) or, now and then, garbage."""
    service, method = draw(st.sampled_from(_methods()))
    choice = draw(st.integers(0, 19))
    if choice == 0:
        return service, method, draw(st.binary(min_size=1, max_size=64))
    if choice < 10 and method.name in WELL_FORMED:
        request: Message = draw(WELL_FORMED[method.name])
    else:
        request = draw(message(method.input_type, POOL))
    return service, method, request.SerializeToString()


def _call(target: Target, service: str, method: Any, payload: bytes) -> grpc.StatusCode:
    path = f"/{service}/{method.name}"
    channel = target.channel(service)
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path, None, None)(
                payload, metadata=target.metadata, timeout=STREAM_DEADLINE
            )
            next(iter(stream), None)
            stream.cancel()
            return grpc.StatusCode.OK
        channel.unary_unary(path, None, None)(
            payload, metadata=target.metadata, timeout=UNARY_DEADLINE
        )
    except grpc.RpcError as error:
        return _allowed(error, path, method.server_streaming)
    return grpc.StatusCode.OK


def _allowed(error: grpc.RpcError, path: str, streaming: bool) -> grpc.StatusCode:
    """The error's code, failing the example if it is INTERNAL or UNKNOWN (or a unary call that
    did not answer in time)."""
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    details = error.details()  # type: ignore[attr-defined]
    if code in FORBIDDEN or (code == grpc.StatusCode.DEADLINE_EXCEEDED and not streaming):
        raise AssertionError(f"{path} answered {code.name}: {details}")
    return code


def test_client_rpcs_never_fail_internally(target: tuple[Target, str]) -> None:
    fuzzed, _url = target

    @_settings(CLIENT_EXAMPLES)
    @given(calls())
    def one(call: tuple[str, Any, bytes]) -> None:
        code = _call(fuzzed, *call)
        event(f"{call[1].name}: {code.name}")

    one()


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """A crawler's stream: a hello (well formed or not) and what a crawler might send after."""
    hello = draw(
        st.one_of(
            st.builds(
                lambda worker_id, slots: wpb.ConnectRequest(
                    hello=wpb.WorkerHello(worker_id=worker_id, slots=slots, protocol_version=1)
                ),
                st.sampled_from(["fuzz-w1", "fuzz-w2", "x" * 300, "nul\x00"]),
                st.sampled_from([1, 2, 1000, 0, -1]),
            ),
            message(wpb.ConnectRequest.DESCRIPTOR, POOL),
        )
    )
    rest = draw(st.lists(message(wpb.ConnectRequest.DESCRIPTOR, POOL), max_size=4))
    messages = [m.SerializeToString() for m in [hello, *rest]]
    if draw(st.integers(0, 9)) == 0:
        messages.append(draw(st.binary(min_size=1, max_size=32)))
    return messages


def test_worker_streams_never_fail_internally(target: tuple[Target, str]) -> None:
    fuzzed, _url = target
    connect = fuzzed.channel("scheduler").stream_stream(
        "/ghpulse.v1.WorkerService/Connect", None, None
    )

    @_settings(STREAM_EXAMPLES)
    @given(streams())
    def one(messages: list[bytes]) -> None:
        responses = connect(iter(messages), metadata=fuzzed.metadata, timeout=STREAM_DEADLINE)
        try:
            for _ in responses:
                pass
        except grpc.RpcError as error:
            _allowed(error, "/ghpulse.v1.WorkerService/Connect", streaming=True)

    one()


def _assert_healthy(target: Target) -> None:
    for name in ("scheduler", "crawler"):
        answer = health_pb2_grpc.HealthStub(target.channels[name]).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, name


def _assert_invariants(url: str) -> None:
    engine = db.create_sync(url)
    try:
        with engine.connect() as conn:
            doubled = conn.execute(
                sa.text(
                    # Fan-out children waiting behind a key's active run share its 'waiting'.
                    "SELECT concurrency_key, slot FROM runs WHERE slot IN ('active', 'queued') "
                    "GROUP BY concurrency_key, slot HAVING COUNT(*) > 1"
                )
            ).all()
            assert doubled == []
            active_without_slot = conn.execute(
                sa.text(
                    "SELECT id FROM runs WHERE state IN ('pending', 'running') "
                    "AND (slot IS NULL OR slot <> 'active')"
                )
            ).all()
            assert active_without_slot == []
            gaps = conn.execute(
                sa.text(
                    "SELECT r.id FROM runs r LEFT JOIN (SELECT run_id, COUNT(*) AS n, "
                    "MIN(seq) AS lo, MAX(seq) AS hi FROM run_events GROUP BY run_id) e "
                    "ON e.run_id = r.id WHERE e.n IS NULL OR e.lo <> 1 OR e.hi <> e.n "
                    "OR e.hi <> r.last_seq"
                )
            ).all()
            assert gaps == []
    finally:
        engine.dispose()
