"""The GraphQL side of the GitHub client without I/O: answers -> REST form, errors -> decisions,
and the settings that choose the API."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from crawler_service.github import queries
from crawler_service.github.ratelimit import GraphQLProblem as P
from crawler_service.github.ratelimit import graphql_problem
from crawler_service.settings import CrawlerSettings

NOREPLY = "users.noreply.github.com"


def test_a_pull_request_node_becomes_a_rest_detail_object():
    node = {
        "fullDatabaseId": "2000000000001",
        "id": "PR_x",
        "number": 7,
        "title": "T",
        "state": "MERGED",
        "isDraft": False,
        "body": "",
        "url": "https://github.com/o/r/pull/7",
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-02T00:00:00Z",
        "closedAt": "2024-01-02T00:00:00Z",
        "mergedAt": "2024-01-02T00:00:00Z",
        "merged": True,
        "additions": 3,
        "deletions": 1,
        "changedFiles": 2,
        "baseRefName": "main",
        "author": {"__typename": "Bot", "login": "dependabot"},
    }

    pull = queries.pull(node)

    assert pull["id"] == 2_000_000_000_001  # a BigInt, past 32 bits
    assert pull["state"] == "closed"
    assert pull["merged"] is True
    assert pull["user"] == {"login": "dependabot[bot]", "type": "Bot"}
    assert pull["base"] == {"ref": "main"}
    assert pull["html_url"] == node["url"]
    assert pull["changed_files"] == 2


def test_actors():
    assert queries.actor(None) is None
    assert queries.actor({"__typename": "User", "login": "a"}) == {"login": "a", "type": "User"}
    # A User whose login happens to end in [bot] keeps it; a Bot never gets it twice.
    bot = {"__typename": "Bot", "login": "x[bot]"}
    assert queries.actor(bot) == {"login": "x[bot]", "type": "Bot"}


@pytest.mark.parametrize(
    ("author", "login"),
    [
        ({"email": "a@x", "user": {"login": "alice"}}, "alice"),
        ({"email": f"49699333+dependabot[bot]@{NOREPLY}", "user": None}, "dependabot[bot]"),
        ({"email": f"github-actions[bot]@{NOREPLY}", "user": None}, "github-actions[bot]"),
        ({"email": f"123+alice@{NOREPLY}", "user": None}, None),
        ({"email": "nobody@example.com", "user": None}, None),
    ],
)  # fmt: skip
def test_commit_accounts(author, login):
    node = {
        "commit": {
            "oid": "abc",
            "message": "m",
            "authoredDate": "2024-01-01T00:00:00Z",
            "committedDate": "2024-01-01T00:01:00Z",
            "author": {"name": "n", **author},
            "committer": {"name": "n", "email": "e"},
        }
    }

    commit = queries.commit(node)

    assert (commit["author"] or {}).get("login") == login
    assert commit["sha"] == "abc"
    assert commit["commit"]["author"]["date"] == "2024-01-01T00:00:00Z"
    assert commit["commit"]["committer"]["date"] == "2024-01-01T00:01:00Z"


def test_follow_up_batches_connections_per_pull_request():
    document, variables = queries.follow_up(
        "o/r", [(5, "reviews", "c1"), (5, "commits", "c2"), (9, "commits", "c3")]
    )

    assert document.count("pullRequest(number:") == 2
    assert "pr5: pullRequest(number: 5) { reviews(first: $first, after: $c0)" in document
    assert variables == {
        "owner": "o",
        "name": "r",
        "first": queries.NESTED_SIZE,
        "c0": "c1",
        "c1": "c2",
        "c2": "c3",
    }


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"data": {"x": 1}}, None),
        ({"data": {"x": 1}, "errors": []}, None),
        ({"errors": [{"type": "RATE_LIMITED", "message": "exceeded"}]}, P.RATE_LIMITED),
        ({"errors": [{"type": "RATE_LIMIT", "code": "graphql_rate_limit"}]}, P.RATE_LIMITED),
        ({"errors": [{"message": "A secondary rate limit."}]}, P.SECONDARY),
        ({"data": {"repository": None}, "errors": [{"type": "NOT_FOUND"}]}, P.NOT_FOUND),
        ({"data": None, "errors": [{"type": "FORBIDDEN"}]}, P.FORBIDDEN),
        ({"errors": [{"message": "Field 'x' doesn't exist"}]}, P.INVALID),
        ({"errors": [{"type": "EXCESSIVE_PAGINATION"}]}, P.INVALID),
        ({"data": None, "errors": [{"message": "Something went wrong"}]}, P.TRANSIENT),
        ({"data": {"repository": None}, "errors": [{"message": "timeout"}]}, P.TRANSIENT),
    ],
)  # fmt: skip
def test_graphql_problems(body, problem):
    assert graphql_problem(body) is problem


def test_the_api_setting():
    assert CrawlerSettings().github_api == "auto"
    assert not CrawlerSettings().uses_graphql  # no token: REST
    assert CrawlerSettings(github_token="t").uses_graphql
    assert not CrawlerSettings(github_token="", github_api="auto").uses_graphql
    assert not CrawlerSettings(github_token="t", github_api="rest").uses_graphql
    assert CrawlerSettings(github_token="t", github_api="graphql").uses_graphql


def test_graphql_without_a_token_is_refused():
    with pytest.raises(ValidationError, match="needs GITHUB_TOKEN"):
        CrawlerSettings(github_api="graphql")
    with pytest.raises(ValidationError):
        CrawlerSettings(github_api="soap")


def test_the_api_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("GHPULSE_GITHUB_API", "rest")
    monkeypatch.setenv("GITHUB_TOKEN", "t")
    assert CrawlerSettings().github_api == "rest"
