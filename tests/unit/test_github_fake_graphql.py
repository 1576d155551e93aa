"""The fake GitHub's GraphQL endpoint without a server: GitHub's schema, limits, cost, cursors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ghpulse.testing.fake_github import Dataset, RateBudget, shapes
from ghpulse.testing.fake_github.graphql_api import Reply, answer
from tests.support.github import FakeClock

REPO = "acme/widgets"
PAGE = """
query($first: Int!, $after: String) {
  rateLimit { cost remaining resetAt }
  repository(owner: "acme", name: "widgets") {
    pullRequests(first: $first, after: $after, orderBy: {field: UPDATED_AT, direction: DESC}) {
      totalCount pageInfo { hasNextPage endCursor } nodes { number updatedAt }
    }
  }
}
"""


@pytest.fixture
def dataset() -> Dataset:
    ds = Dataset()
    ds.add_repository(shapes.repository("acme", "widgets", created_at="2024-01-01T00:00:00Z"))
    for n in range(1, 8):
        ds.add_pull(
            REPO,
            number=n,
            created_at=f"2024-01-0{n}T00:00:00Z",
            updated_at=f"2024-02-0{8 - n}T00:00:00Z",
        )
    bot = ds.add_pull(REPO, number=8, author="x", created_at="2024-01-09T00:00:00Z")
    bot["user"] = shapes.user("renovate[bot]", kind="Bot")
    return ds


def ask(dataset: Dataset, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> Reply:
    budget = kw.pop("budget", None) or RateBudget(5000, clock=FakeClock(), resource="graphql")
    raw = json.dumps({"query": query, "variables": variables or {}}).encode()
    return answer(dataset, budget, raw, **kw)


def messages(reply: Reply) -> list[str]:
    return [error["message"] for error in reply.body.get("errors", [])]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('{ repository(owner: "acme", name: "widgets") { stars } }', "Cannot query field 'stars'"),
        ('{ repository(owner: "acme") { name } }', "of type 'String!' is required"),
        ('{ repository(owner: "acme", name: 1) { name } }', "String cannot represent a non"),
        ("{ repository(owner: ", "Syntax Error"),
        ('{ viewer { login } repository(owner: "a", name: "b") }', "must have a selection"),
    ],
)
def test_queries_github_would_reject_are_rejected_without_data(dataset, query, message):
    reply = ask(dataset, query)

    assert reply.status == 200
    assert "data" not in reply.body
    assert any(message in m for m in messages(reply)), messages(reply)
    assert reply.cost == 0


def test_connections_need_first_or_last_of_at_most_100(dataset):
    missing = ask(
        dataset, '{ repository(owner: "acme", name: "widgets") { pullRequests { totalCount } } }'
    )
    too_many = ask(dataset, PAGE, {"first": 101})

    assert missing.body["errors"][0]["type"] == "MISSING_PAGINATION_BOUNDARIES"
    assert too_many.body["errors"][0]["type"] == "EXCESSIVE_PAGINATION"
    assert messages(too_many) == [
        "Requesting 101 records on the `pullRequests` connection exceeds the `first` limit of "
        "100 records."
    ]


@pytest.mark.parametrize(
    ("first", "nested", "cost"),
    [(1, 1, 1), (50, 100, 1), (100, 100, 2), (100, 10, 2), (10, 100, 1)],
)
def test_cost_follows_githubs_rule(dataset, first, nested, cost):
    # pullRequests: 1 request; reviews and commits: one request per PR each -> (1 + 2n) / 100.
    query = """query($first: Int!, $nested: Int!) { rateLimit { cost } repository(owner: "acme",
      name: "widgets") { pullRequests(first: $first) { nodes { reviews(first: $nested)
      { totalCount } commits(first: $nested) { totalCount } } } } }"""
    reply = ask(dataset, query, {"first": first, "nested": nested})

    assert reply.cost == cost
    assert reply.body["data"]["rateLimit"]["cost"] == cost


def test_too_many_nodes_are_refused(dataset):
    # 100 PRs, each with its repository's 100 PRs, each with 100 commits: 1,010,100 nodes.
    query = """{ repository(owner: "acme", name: "widgets") { pullRequests(first: 100) {
      nodes { repository { pullRequests(first: 100) {
      nodes { commits(first: %d) { totalCount } } } } } } } }"""
    allowed = ask(dataset, query % 40)  # 100 + 10,000 + 400,000

    refused = ask(dataset, query % 100)

    assert "data" in allowed.body
    assert refused.body["errors"][0]["type"] == "MAX_NODE_LIMIT_EXCEEDED"
    assert "1,010,100" in messages(refused)[0]


def test_the_budget_is_charged_and_refused_when_spent(dataset):
    clock = FakeClock()
    budget = RateBudget(2, clock=clock, resource="graphql")

    first = ask(dataset, PAGE, {"first": 2}, budget=budget)
    second = ask(dataset, PAGE, {"first": 2}, budget=budget)
    third = ask(dataset, PAGE, {"first": 2}, budget=budget)
    clock.now += 3600
    after_reset = ask(dataset, PAGE, {"first": 2}, budget=budget)

    assert [r.body["data"]["rateLimit"]["remaining"] for r in (first, second)] == [1, 0]
    assert third.body == {
        "errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]
    }
    assert after_reset.body["data"]["rateLimit"]["remaining"] == 1


def test_cursor_pages_stay_consistent_while_pull_requests_are_updated(dataset):
    first = ask(dataset, PAGE, {"first": 3}).body["data"]["repository"]["pullRequests"]
    dataset.touch_pull(REPO, 2)  # was on page 1: moves to the top, not into page 2
    cursor = first["pageInfo"]["endCursor"]
    second = ask(dataset, PAGE, {"first": 3, "after": cursor}).body["data"]
    nodes = second["repository"]["pullRequests"]["nodes"]

    assert [n["number"] for n in first["nodes"]] == [1, 2, 3]
    assert [n["number"] for n in nodes] == [4, 5, 6]
    assert first["totalCount"] == 8
    assert first["pageInfo"]["hasNextPage"] is True


def test_graphql_spells_things_as_github_does(dataset):
    query = """{ repository(owner: "acme", name: "widgets") { nameWithOwner
      defaultBranchRef { name } pullRequest(number: 8) { state body fullDatabaseId
      author { __typename login } } } }"""
    data = ask(dataset, query).body["data"]["repository"]

    assert data["nameWithOwner"] == REPO
    assert data["defaultBranchRef"] == {"name": "main"}
    pull = data["pullRequest"]
    assert pull["author"] == {"__typename": "Bot", "login": "renovate"}
    assert pull["state"] == "OPEN"
    assert pull["body"] == ""
    assert isinstance(pull["fullDatabaseId"], str)


def test_missing_objects_are_not_found_errors(dataset):
    reply = ask(dataset, '{ repository(owner: "acme", name: "gone") { name } }')

    assert reply.body["data"] == {"repository": None}
    assert reply.body["errors"][0]["type"] == "NOT_FOUND"
    assert reply.body["errors"][0]["path"] == ["repository"]


def test_a_partial_answer_drops_the_repository_and_says_why(dataset):
    reply = ask(dataset, PAGE, {"first": 2}, partial_error="")

    assert reply.body["data"]["repository"] is None
    assert reply.body["data"]["rateLimit"]["cost"] == 1
    assert "Something went wrong" in messages(reply)[0]


def test_bad_json_is_a_400(dataset):
    budget = RateBudget(5000, clock=FakeClock(), resource="graphql")
    assert answer(dataset, budget, b"{nope").status == 400
