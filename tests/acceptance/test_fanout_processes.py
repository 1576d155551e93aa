"""Fan-out with real processes on PostgreSQL: a `ghpulse scheduler` and `ghpulse crawler`s share the
children of a crawl over several repositories (the test jobs of tests/support/jobs.py), a child
whose crawler is killed retries alone, cancelling the parent cancels the children, and an
organization's repositories are listed afresh on every run (the real crawl job against a fake
GitHub whose organization gains a repository between two runs)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from ghpulse.testing.fake_github import shapes
from tests.support import postgres
from tests.support.github import serve
from tests.support.processes import BIN, Processes

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
T = TypeVar("T")
WAIT = 60.0
TERMINAL = {runs_pb2.RUN_STATE_SUCCEEDED, runs_pb2.RUN_STATE_FAILED, runs_pb2.RUN_STATE_CANCELLED}


@pytest.fixture
def cluster(processes: Processes, pg_available: None) -> Iterator[Processes]:
    """The processes with their scheduler on a fresh PostgreSQL database."""
    with postgres.fresh("ghp_fanout_acc") as url:
        processes.scheduler_db = url
        yield processes
        for service in reversed(processes.started):
            service.kill()


@pytest.fixture
def client(cluster: Processes) -> Iterator[SchedulerServiceStub]:
    with grpc.insecure_channel(cluster.scheduler_addr) as channel:
        yield SchedulerServiceStub(channel)


def eventually(check: Callable[[], T | None], what: str) -> T:
    """Poll `check` until it returns something (the condition is exact; the timeout generous)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def output(run: runs_pb2.Run) -> dict[str, Any]:
    return MessageToDict(run.output)


def trigger(client: SchedulerServiceStub, *repositories: str) -> runs_pb2.Run:
    request = spb.TriggerRunRequest(
        crawl=runs_pb2.CrawlJob(repositories=list(repositories)), labels={"team": "core"}
    )
    return client.TriggerRun(request, timeout=10).run


def children(client: SchedulerServiceStub, parent_id: str) -> dict[str, runs_pb2.Run]:
    request = spb.ListRunsRequest(parent_run_id=parent_id, page_size=500)
    return {run.crawl.repositories[0]: run for run in client.ListRuns(request, timeout=10).runs}


def follow(
    client: SchedulerServiceStub, run_id: str
) -> tuple[runs_pb2.Run, list[runs_pb2.RunEvent]]:
    """Watch the run to its end; its final state and every event."""
    events = []
    for message in client.WatchRun(spb.WatchRunRequest(run_id=run_id), timeout=WAIT * 2):
        if message.HasField("event"):
            events.append(message.event)
            if message.event.state_changed.state in TERMINAL:
                break
    return client.GetRun(spb.GetRunRequest(run_id=run_id), timeout=10).run, events


def all_in_beta(
    client: SchedulerServiceStub, parent_id: str, count: int
) -> list[runs_pb2.Run] | None:
    """The parent's children once `count` of them are running their gated beta step."""
    kids = list(children(client, parent_id).values())
    in_beta = [
        run
        for run in kids
        if run.state == runs_pb2.RUN_STATE_RUNNING
        and any(s.name == "beta" and s.state == runs_pb2.STEP_STATE_RUNNING for s in run.steps)
    ]
    return kids if len(in_beta) == count else None


def test_children_run_on_both_crawlers_and_a_killed_one_retries_alone(
    cluster: Processes, client: SchedulerServiceStub
) -> None:
    cluster.scheduler(GHPULSE_LEASE_TTL="2")
    first = cluster.crawler("crawler-a", GHPULSE_CRAWLER_SLOTS="2")
    cluster.crawler("crawler-b", GHPULSE_CRAWLER_SLOTS="2")
    names = [f"test/gated-{n}" for n in range(1, 5)]
    parent = trigger(client, *names)
    assert parent.state == runs_pb2.RUN_STATE_RUNNING and parent.children_total == 4

    kids = eventually(lambda: all_in_beta(client, parent.id, 4), "four children in beta")
    assert {run.worker_id for run in kids} == {"crawler-a", "crawler-b"}
    assert all(run.labels == {"team": "core"} for run in kids)
    on_first = {run.id for run in kids if run.worker_id == "crawler-a"}
    first.kill()
    cluster.crawler("crawler-c", GHPULSE_CRAWLER_SLOTS="2")
    for run in kids:
        cluster.open_gate(run.id)

    final, _ = follow(client, parent.id)
    assert final.state == runs_pb2.RUN_STATE_SUCCEEDED, final.error
    # The stored log (a live watcher may see coalesced progress).
    _, events = follow(client, parent.id)
    assert output(final)["children"]["succeeded"] == 4
    attempts = {run.id: run.attempt for run in children(client, parent.id).values()}
    # Only the children of the killed crawler ran again.
    assert {run_id for run_id, attempt in attempts.items() if attempt == 2} == on_first
    assert {attempt for run_id, attempt in attempts.items() if run_id not in on_first} == {1}
    progress = [e.step_progress for e in events if e.HasField("step_progress")]
    assert [p.current for p in progress if p.message.endswith(": succeeded")] == [1, 2, 3, 4]
    assert {p.message for p in progress} >= {f"{name}: beta" for name in names}


def test_cancelling_the_parent_cancels_its_children(
    cluster: Processes, client: SchedulerServiceStub
) -> None:
    cluster.scheduler()
    cluster.crawler("crawler-a", GHPULSE_CRAWLER_SLOTS="2")
    parent = trigger(client, "test/gated-1", "test/gated-2", "test/gated-3")
    eventually(lambda: all_in_beta(client, parent.id, 2), "two children in beta")

    client.CancelRun(spb.CancelRunRequest(run_id=parent.id, reason="enough"), timeout=10)
    final, _ = follow(client, parent.id)
    assert final.state == runs_pb2.RUN_STATE_CANCELLED
    states = {run.state for run in children(client, parent.id).values()}
    assert states == {runs_pb2.RUN_STATE_CANCELLED}


def test_a_failing_child_fails_alone(cluster: Processes, client: SchedulerServiceStub) -> None:
    cluster.scheduler()
    cluster.crawler("crawler-a", GHPULSE_CRAWLER_SLOTS="2")
    cluster.crawler("crawler-b", GHPULSE_CRAWLER_SLOTS="2")
    parent = trigger(client, "test/ok", "test/fail-once", "test/fail")
    final, _ = follow(client, parent.id)
    assert final.state == runs_pb2.RUN_STATE_FAILED
    assert (
        final.error.code == "CHILDREN_FAILED" and "test/fail (TEST_PERMANENT" in final.error.message
    )
    kids = children(client, parent.id)
    assert (kids["test/ok"].state, kids["test/ok"].attempt) == (runs_pb2.RUN_STATE_SUCCEEDED, 1)
    retried = kids["test/fail-once"]
    assert (retried.state, retried.attempt) == (runs_pb2.RUN_STATE_SUCCEEDED, 2)
    assert kids["test/fail"].state == runs_pb2.RUN_STATE_FAILED
    assert [f["repository"] for f in output(final)["children"]["failed"]] == ["test/fail"]


def test_an_organization_is_listed_afresh_on_every_run(
    cluster: Processes, client: SchedulerServiceStub
) -> None:
    with serve() as github, postgres.fresh("ghp_fanout_crawl") as crawler_db:
        cluster.scheduler()
        real_crawl = {
            "GHPULSE_CRAWLER_PLUGINS": "",
            "GHPULSE_GITHUB_API_URL": github.url,
            "GHPULSE_CRAWLER_DB": crawler_db,
            "GHPULSE_CRAWLER_SLOTS": "2",
        }
        cluster.crawler("crawler-a", **real_crawl)
        cluster.crawler("crawler-b", **real_crawl)
        request = spb.TriggerRunRequest(crawl=runs_pb2.CrawlJob(organization="ghpulse-demo"))

        first, _ = follow(client, client.TriggerRun(request, timeout=10).run.id)
        assert first.state == runs_pb2.RUN_STATE_SUCCEEDED, first.error
        demo = ["ghpulse-demo/api", "ghpulse-demo/infra", "ghpulse-demo/web"]
        assert sorted(children(client, first.id)) == demo
        assert sorted(output(first)["repositories_fetched"]) == demo
        assert output(first)["prs_updated"] > 0

        docs = shapes.repository("ghpulse-demo", "docs", created_at="2024-05-01T00:00:00Z")
        github.dataset.add_repository(docs)
        second, _ = follow(client, client.TriggerRun(request, timeout=10).run.id)
        assert second.state == runs_pb2.RUN_STATE_SUCCEEDED, second.error
        assert sorted(children(client, second.id)) == sorted([*demo, "ghpulse-demo/docs"])
        assert second.children_total == 4

        env = {"GHPULSE_SCHEDULER_ADDR": cluster.scheduler_addr, "PATH": str(BIN)}
        listed = subprocess.run(
            [str(BIN / "ghpulse"), "runs", "--parent", second.id, "-o", "json"],
            env=env, capture_output=True, text=True, check=True, timeout=WAIT,
        )  # fmt: skip
        assert len(json.loads(listed.stdout)["runs"]) == 4
        watched = subprocess.run(
            [str(BIN / "ghpulse"), "watch", second.id],
            env=env, capture_output=True, text=True, check=False, timeout=WAIT,
        )  # fmt: skip
        assert watched.returncode == 0, watched.stderr
        assert f"run {second.id} succeeded" in watched.stdout
