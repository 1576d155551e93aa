"""Several GitHub tokens of different owners: each repository is served by the token that can see
it (found once, then remembered), its owner is in the run output, never a token; the tokens come
from GITHUB_TOKEN, GITHUB_TOKENS or the lines of GITHUB_TOKEN_FILE."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from common.jobs import CrawlSpec
from common.proto.ghpulse.v1 import runs_pb2
from crawler_service.data.store import CrawlerStore
from crawler_service.github.budget import TokenBudget
from crawler_service.github.tokens import Credential, Credentials
from crawler_service.settings import CrawlerSettings
from ghpulse.testing.fake_github import FakeGitHub, account
from tests.support.cluster import TERMINAL, cluster
from tests.support.crawl import (
    GADGETS,
    WIDGETS,
    client,
    graphql_client,
    instant_sleep,
    make_dataset,
    make_runner,
)

ALICE, BOB = "ghp_alice_token_0123456789", "ghp_bob_token_0123456789"
OLD = "acme/old"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    accounts = {ALICE: account("alice", WIDGETS), BOB: account("bob", GADGETS)}
    with FakeGitHub(make_dataset(), accounts=accounts) as server:
        yield server


@pytest.fixture
async def store(crawler_db_url: str) -> AsyncIterator[CrawlerStore]:
    async with await CrawlerStore.open(crawler_db_url) as opened:
        yield opened


async def credentials(
    stack: AsyncExitStack, fake: FakeGitHub, *, graphql: bool = False
) -> Credentials:
    """Alice's token first, then Bob's; each learns its owner through `GET /user`."""
    made = []
    for token in (ALICE, BOB):
        budget = TokenBudget(sleep=instant_sleep)
        github = await stack.enter_async_context(client(fake, token=token, budget=budget))
        query = None
        if graphql:
            query = await stack.enter_async_context(
                graphql_client(fake, token=token, budget=budget)
            )
        made.append(Credential(github, query))
    return Credentials(made)


def by(fake: FakeGitHub, repository: str) -> list[tuple[str, int]]:
    """(login, status) of the requests about `repository`, in order."""
    return [(r.login, r.status) for r in fake.requests if r.path.startswith(f"/repos/{repository}")]


async def test_each_repository_is_served_by_the_token_that_sees_it(store, fake, tmp_path):
    async with AsyncExitStack() as stack:
        tokens = await credentials(stack, fake)
        runner = make_runner(
            store, tokens.first.github, tmp_path / "exports", api="rest", credentials=tokens
        )
        first = await runner.run(CrawlSpec((WIDGETS, GADGETS, OLD)), run_id="run-1")
        asked = by(fake, GADGETS)
        owners_asked = sorted(r.login for r in fake.requests if r.path == "/user")
        fake.reset_requests()
        second = await runner.run(CrawlSpec((GADGETS, WIDGETS), refresh=True), run_id="run-2")

    assert first["github_owners"] == {WIDGETS: "alice", GADGETS: "bob", OLD: "alice"}
    assert first["repositories_fetched"] == [WIDGETS, GADGETS]
    # No token sees the third: it fails as GitHub says, the others go on.
    assert [(f["repository"], f["code"]) for f in first["failed_repositories"]] == [
        (OLD, "GITHUB_NOT_FOUND")
    ]
    # Alice's token was tried first for GADGETS (404), Bob's served it.
    assert asked[0] == ("alice", 404)
    assert {login for login, _ in asked[1:]} == {"bob"}
    # The next run goes to the remembered token at once: no 404 any more.
    assert second["github_owners"] == {GADGETS: "bob", WIDGETS: "alice"}
    assert all(r.status != 404 for r in fake.requests)
    assert {r.login for r in fake.requests if r.path.startswith(f"/repos/{WIDGETS}")} == {"alice"}
    # Each owner was learned once; no token anywhere in the outputs.
    assert owners_asked == ["alice", "bob"]
    assert [r for r in fake.requests if r.path == "/user"] == []
    text = json.dumps([first, second])
    assert ALICE not in text and BOB not in text


async def test_graphql_goes_with_the_token_that_serves_the_repository(store, fake, tmp_path):
    async with AsyncExitStack() as stack:
        tokens = await credentials(stack, fake, graphql=True)
        runner = make_runner(
            store,
            tokens.first.github,
            tmp_path / "exports",
            graphql=tokens.first.graphql,
            api="graphql",
            credentials=tokens,
        )
        output = await runner.run(CrawlSpec((GADGETS, WIDGETS)))

    assert output["github_owners"] == {GADGETS: "bob", WIDGETS: "alice"}
    assert output["failed_repositories"] == []
    assert output["graphql_queries"] >= 2
    queries = [r for r in fake.requests if r.path == "/graphql"]
    assert {r.login for r in queries} == {"alice", "bob"}
    assert all(r.status == 200 for r in queries)


def test_tokens_come_from_the_environment_or_the_file(tmp_path: Path):
    path = tmp_path / "tokens"
    path.write_text(f"{ALICE}\n\n  {BOB}  \n")

    assert CrawlerSettings(github_token_file=str(path)).github_secrets == [ALICE, BOB]
    both = CrawlerSettings(github_token=ALICE, github_tokens=f"{BOB}, {ALICE},")
    assert both.github_secrets == [ALICE, BOB]
    assert both.github_secret == ALICE
    # The environment wins over the file.
    assert CrawlerSettings(github_tokens=BOB, github_token_file=str(path)).github_secrets == [BOB]


async def test_a_crawler_configured_with_two_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeGitHub
) -> None:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(tmp_path) as c:
        await c.add_crawler(
            "two-tokens",
            plugins="",
            github_api_url=fake.url,
            github_api="rest",
            github_tokens=f"{ALICE},{BOB}",
        )
        triggered = await c.trigger(GADGETS, WIDGETS)
        run = await c.wait_for_state(triggered.run.id, *TERMINAL)

    assert run.state == runs_pb2.RUN_STATE_SUCCEEDED, run.error
    output: dict[str, Any] = dict(run.output)
    assert dict(output["github_owners"]) == {GADGETS: "bob", WIDGETS: "alice"}
    assert ALICE not in str(run) and BOB not in str(run)
