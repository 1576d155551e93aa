"""Fan-out in the run store (`common.jobs.fanout`), on a temporary SQLite file and on PostgreSQL:
parents, children, their keys, progress, output, failures, cancel and retry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from common.jobs import CrawlSpec, RecalculateSpec, default_concurrency_key
from common.jobs.fanout import CHILDREN_STEP, sum_outputs
from scheduler_service.runs.model import (
    AttemptRef,
    AttemptResult,
    ConflictPolicy,
    Disposition,
    EventKind,
    NewRun,
    Outcome,
    Run,
    RunError,
    RunQuery,
    RunState,
    StepReport,
    StepState,
    Trigger,
)
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.store import SqlRunStore
from tests.support.runs import DAY, T0, TTL, new_run

REPOS = ("octo/a", "octo/b", "octo/c")


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy(timedelta(seconds=5), timedelta(60)))
    yield store
    await store.close()


def crawl_of(*repositories: str, organization: str = "", **kw: Any) -> NewRun:
    spec = CrawlSpec(tuple(repositories), organization)
    return new_run(spec=spec, concurrency_key=default_concurrency_key(spec), **kw)


async def children(store: SqlRunStore, parent: Run) -> dict[str, Run]:
    runs = await store.list_runs(RunQuery(parent_run_id=parent.id))
    return {run.spec.repositories[0]: run for run in runs}  # type: ignore[attr-defined]


async def claim_all(store: SqlRunStore, worker: str = "w1") -> list[Run]:
    claimed = []
    while (run := (await store.claim(worker, T0, TTL)).run) is not None:
        claimed.append(run)
    return claimed


async def succeed(store: SqlRunStore, run: Run, worker: str = "w1", prs: int = 1) -> None:
    output = {"repositories_fetched": list(run.spec.repositories), "prs_updated": prs}  # type: ignore[attr-defined]
    await store.finish_attempt(run.ref, worker, AttemptResult(Outcome.SUCCEEDED, output), T0)


async def test_a_crawl_of_several_repositories_fans_out(store: SqlRunStore) -> None:
    created = await store.create_run(crawl_of(*REPOS, labels={"team": "core"}), T0, DAY)
    parent = created.run
    assert parent.state is RunState.RUNNING and parent.worker_id == ""
    assert (parent.children_total, parent.children_done) == (3, 0)
    assert [s.name for s in parent.steps] == [CHILDREN_STEP]

    kids = await children(store, parent)
    assert sorted(kids) == list(REPOS)
    for name, child in kids.items():
        assert child.parent_run_id == parent.id and child.state is RunState.PENDING
        assert child.concurrency_key == f"crawl:{name}"
        assert child.labels == {"team": "core"} and child.spec == CrawlSpec((name,))

    claimed = await claim_all(store)
    # Only the children are dispatched, never the parent.
    assert sorted(run.id for run in claimed) == sorted(run.id for run in kids.values())
    for run, prs in zip(claimed, (1, 2, 3), strict=True):
        await succeed(store, run, prs=prs)

    done = await store.get_run(parent.id)
    assert done.state is RunState.SUCCEEDED and done.children_done == 3
    assert done.output is not None
    assert done.output["prs_updated"] == 6
    assert sorted(done.output["repositories_fetched"]) == list(REPOS)
    assert done.output["children"] == {"total": 3, "succeeded": 3, "failed": []}
    events = await store.events_after(parent.id, 0)
    progress = [e.data["current"] for e in events if e.kind is EventKind.STEP_PROGRESS]
    assert progress == [1, 2, 3]
    assert events[-1].data["state"] == RunState.SUCCEEDED.value


async def test_a_single_repository_stays_one_run(store: SqlRunStore) -> None:
    created = await store.create_run(crawl_of("octo/a"), T0, DAY)
    assert created.run.state is RunState.PENDING and created.run.children_total == 0
    assert await store.list_runs(RunQuery(parent_run_id=created.run.id)) == []


async def test_a_repository_github_refused_is_listed_and_the_parent_succeeds(
    store: SqlRunStore,
) -> None:
    # As a single run over several repositories: the refused one is in `failed_repositories`.
    parent = (await store.create_run(crawl_of(*REPOS), T0, DAY)).run
    a, b, c = await claim_all(store)
    refused = RunError("ALL_REPOSITORIES_FAILED", "every repository failed: archived", False)
    await store.finish_attempt(a.ref, "w1", AttemptResult(Outcome.FAILED, error=refused), T0)
    await succeed(store, b)
    await succeed(store, c)
    done = await store.get_run(parent.id)
    assert done.state is RunState.SUCCEEDED and done.error is None
    assert done.output is not None
    assert [f["code"] for f in done.output["failed_repositories"]] == ["ALL_REPOSITORIES_FAILED"]
    assert done.output["children"]["succeeded"] == 2


async def test_a_parent_whose_every_repository_was_refused_fails(store: SqlRunStore) -> None:
    parent = (await store.create_run(crawl_of(*REPOS), T0, DAY)).run
    refused = RunError("ALL_REPOSITORIES_FAILED", "every repository failed: not found", False)
    for child in await claim_all(store):
        await store.finish_attempt(
            child.ref, "w1", AttemptResult(Outcome.FAILED, error=refused), T0
        )
    failed = await store.get_run(parent.id)
    assert failed.state is RunState.FAILED and failed.error is not None
    assert failed.error.code == "CHILDREN_FAILED"


async def test_a_failing_child_retries_alone_and_fails_only_its_parent(store: SqlRunStore) -> None:
    parent = (await store.create_run(crawl_of(*REPOS), T0, DAY)).run
    a, b, c = await claim_all(store)
    flaky = RunError("GITHUB_UNAVAILABLE", "502", True)
    await store.finish_attempt(a.ref, "w1", AttemptResult(Outcome.FAILED, error=flaky), T0)
    await succeed(store, b)
    await succeed(store, c)
    retrying = await store.get_run(a.id)
    assert retrying.state is RunState.PENDING and retrying.attempt == 2
    assert (await store.get_run(parent.id)).state is RunState.RUNNING

    again = (await store.claim("w2", T0 + timedelta(minutes=1), TTL)).run
    assert again is not None and again.id == a.id
    gone = RunError("GITHUB_NOT_FOUND", "no such repository", False)
    await store.finish_attempt(
        again.ref, "w2", AttemptResult(Outcome.FAILED, error=gone), T0 + timedelta(minutes=1)
    )
    failed = await store.get_run(parent.id)
    assert failed.state is RunState.FAILED and failed.error is not None
    assert failed.error.code == "CHILDREN_FAILED" and a.spec.repositories[0] in failed.error.message  # type: ignore[attr-defined]
    assert failed.output is not None and failed.output["prs_updated"] == 2
    assert [f["run_id"] for f in failed.output["children"]["failed"]] == [a.id]
    assert failed.output["failed_repositories"][0]["code"] == "GITHUB_NOT_FOUND"
    for other in (b, c):
        assert (await store.get_run(other.id)).state is RunState.SUCCEEDED

    # RetryRun of the parent retries its failed child only.
    retried = (await store.retry_run(parent.id, T0 + timedelta(minutes=2), by="ops")).run
    assert retried is not None and retried.state is RunState.RUNNING
    assert retried.children_done == 2
    child = (await store.claim("w1", T0 + timedelta(minutes=2), TTL)).run
    assert child is not None and child.id == a.id
    await succeed(store, child)
    assert (await store.get_run(parent.id)).state is RunState.SUCCEEDED


async def test_cancelling_the_parent_cancels_its_children(store: SqlRunStore) -> None:
    parent = (await store.create_run(crawl_of(*REPOS), T0, DAY)).run
    running = (await store.claim("w1", T0, TTL)).run
    assert running is not None
    transition = await store.cancel_run(parent.id, "enough", T0, by="ops")
    # The running child's crawler is asked to stop; the pending ones are cancelled at once.
    assert [stop.ref for stop in transition.stops] == [running.ref]
    kids = await children(store, parent)
    states = sorted(run.state for run in kids.values())
    assert states == [RunState.CANCELLED, RunState.CANCELLED, RunState.RUNNING]
    assert (await store.get_run(parent.id)).state is RunState.RUNNING

    await store.finish_attempt(running.ref, "w1", AttemptResult(Outcome.CANCELLED), T0)
    cancelled = await store.get_run(parent.id)
    assert cancelled.state is RunState.CANCELLED and cancelled.cancelled_by == "ops"


async def test_one_active_crawl_per_repository_across_parents(store: SqlRunStore) -> None:
    alone = (await store.create_run(crawl_of("octo/b"), T0, DAY)).run
    first = (await store.create_run(crawl_of(*REPOS), T0, DAY)).run
    second = (await store.create_run(crawl_of("octo/b", "octo/d"), T0, DAY)).run
    first_b = (await children(store, first))["octo/b"]
    second_b = (await children(store, second))["octo/b"]
    assert first_b.state is RunState.QUEUED and second_b.state is RunState.QUEUED

    claimed = {run.id for run in await claim_all(store)}
    assert alone.id in claimed and first_b.id not in claimed and second_b.id not in claimed
    await succeed(store, await store.get_run(alone.id))
    # Promoted in the order they queued: one at a time.
    assert (await store.get_run(first_b.id)).state is RunState.PENDING
    assert (await store.get_run(second_b.id)).state is RunState.QUEUED
    promoted = (await store.claim("w1", T0, TTL)).run
    assert promoted is not None and promoted.id == first_b.id
    await succeed(store, promoted)
    assert (await store.get_run(second_b.id)).state is RunState.PENDING


async def test_an_organization_is_planned_by_a_crawler_first(store: SqlRunStore) -> None:
    created = await store.create_run(crawl_of(organization="octo"), T0, DAY)
    parent = created.run
    assert parent.state is RunState.PENDING and parent.children_total == 0
    plan = (await store.claim("w1", T0, TTL)).run
    assert plan is not None and plan.id == parent.id
    step = StepReport(EventKind.STEP_FINISHED, "plan", state=StepState.SUCCEEDED, output={})
    result = AttemptResult(Outcome.SUCCEEDED, {"fan_out": ["octo/a", "octo/b"]})
    transition = await store.finish_attempt(plan.ref, "w1", result, T0, reports=[step])
    assert transition.run is not None and transition.run.state is RunState.RUNNING
    assert transition.run.worker_id == "" and transition.run.children_total == 2
    assert transition.dispatchable
    assert sorted(await children(store, parent)) == ["octo/a", "octo/b"]
    # Step starts of the children show on the parent.
    child = (await store.claim("w2", T0, TTL)).run
    assert child is not None
    started = StepReport(EventKind.STEP_STARTED, "fetch")
    await store.record_steps(child.ref, "w2", [started], T0)
    last = (await store.events_after(parent.id, 0))[-1]
    assert last.kind is EventKind.STEP_PROGRESS
    assert last.data["message"] == f"{child.spec.repositories[0]}: fetch"  # type: ignore[attr-defined]


async def test_an_empty_organization_succeeds_at_once(store: SqlRunStore) -> None:
    parent = (await store.create_run(crawl_of(organization="empty"), T0, DAY)).run
    plan = (await store.claim("w1", T0, TTL)).run
    assert plan is not None
    result = AttemptResult(Outcome.SUCCEEDED, {"fan_out": []})
    await store.finish_attempt(plan.ref, "w1", result, T0)
    done = await store.get_run(parent.id)
    assert done.state is RunState.SUCCEEDED
    assert done.output == {
        "failed_repositories": [],
        "children": {"total": 0, "succeeded": 0, "failed": []},
    }


async def test_a_queued_parent_fans_out_when_promoted(store: SqlRunStore) -> None:
    spec = RecalculateSpec(("octo/a", "octo/b"), steps=("link",))
    key = default_concurrency_key(spec)
    first = (await store.create_run(new_run(spec=spec, concurrency_key=key), T0, DAY)).run
    queued = await store.create_run(
        new_run(spec=spec, concurrency_key=key, policy=ConflictPolicy.QUEUE), T0, DAY
    )
    assert queued.run.state is RunState.QUEUED
    for run in await claim_all(store):
        await store.finish_attempt(run.ref, "w1", AttemptResult(Outcome.SUCCEEDED, {}), T0)
    assert (await store.get_run(first.id)).state is RunState.SUCCEEDED
    promoted = await store.get_run(queued.run.id)
    assert promoted.state is RunState.RUNNING and promoted.children_total == 2
    kids = await children(store, promoted)
    assert kids["octo/a"].concurrency_key == "recalculate:octo/a"
    assert kids["octo/a"].spec == RecalculateSpec(("octo/a",), steps=("link",))


async def test_expiry_leaves_a_parent_to_its_children(store: SqlRunStore) -> None:
    parent = (await store.create_run(crawl_of("octo/a", "octo/b"), T0, DAY)).run
    await store.cancel_run(parent.id, "", T0)
    later = T0 + timedelta(hours=1)
    await store.expire(later, timedelta(seconds=10))
    assert (await store.get_run(parent.id)).state is RunState.CANCELLED
    ref = AttemptRef(parent.id, parent.attempt)
    assert ref.run_id == parent.id


def test_sum_outputs_adds_numbers_and_joins_lists() -> None:
    total = sum_outputs(
        [
            {"n": 1, "l": ["a"], "d": {"x": 1}, "s": "first", "flag": True},
            {"n": 2, "l": ["b"], "d": {"x": 2, "y": 3}, "s": "second", "flag": False},
        ]
    )
    assert total == {"n": 3, "l": ["a", "b"], "d": {"x": 3, "y": 3}, "s": "first", "flag": True}


async def test_children_inherit_the_trigger_and_an_on_demand_crawl_joins_one(
    store: SqlRunStore,
) -> None:
    deadline = T0 + timedelta(hours=1)
    fired = crawl_of(
        "octo/a",
        "octo/b",
        trigger=Trigger.SCHEDULE,
        schedule_id="hourly",
        nominal_time=T0,
        deadline_at=deadline,
        triggered_by="schedule:hourly",
        max_attempts=5,
    )
    parent = (await store.create_run(fired, T0, DAY)).run
    assert parent.deadline_at is None  # the children carry it
    child = (await children(store, parent))["octo/a"]
    assert (child.trigger, child.schedule_id, child.nominal_time) == (
        Trigger.SCHEDULE,
        "hourly",
        T0,
    )
    assert (child.deadline_at, child.triggered_by, child.max_attempts) == (
        deadline,
        "schedule:hourly",
        5,
    )
    # An on-demand crawl of that repository meets the child on its key.
    joined = await store.create_run(crawl_of("octo/a"), T0, DAY)
    assert joined.disposition is Disposition.JOINED and joined.run.id == child.id


async def test_retrying_a_failed_child_reopens_its_parent(store: SqlRunStore) -> None:
    parent = (await store.create_run(crawl_of("octo/a", "octo/b"), T0, DAY)).run
    first, second = await claim_all(store)
    gone = RunError("GITHUB_NOT_FOUND", "no such repository", False)
    await store.finish_attempt(first.ref, "w1", AttemptResult(Outcome.FAILED, error=gone), T0)
    await succeed(store, second)
    assert (await store.get_run(parent.id)).state is RunState.FAILED

    await store.retry_run(first.id, T0, by="ops")
    reopened = await store.get_run(parent.id)
    assert reopened.state is RunState.RUNNING and reopened.children_done == 1
    again = (await store.claim("w1", T0, TTL)).run
    assert again is not None and again.id == first.id
    await succeed(store, again)
    done = await store.get_run(parent.id)
    assert done.state is RunState.SUCCEEDED and done.error is None
