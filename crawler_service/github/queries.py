"""The GraphQL documents the crawl sends, and the mapping of their answers to the REST form.

Raw items are stored in the shape of GitHub's REST API whichever API fetched them, so the upsert,
link, classify and export steps (and `recalculate`) give the same rows either way. The queries ask
for what those steps read (plus ids), so raw items from GraphQL hold fewer fields than REST's:

- ids: `fullDatabaseId` (a BigInt, sent as a string) is REST's `id`;
- actors: GraphQL spells bots without REST's `[bot]` suffix (`dependabot` for `dependabot[bot]`)
  and gives their kind as `__typename` (REST's `type`);
- commits: `authoredDate`/`committedDate` are REST's `commit.author.date`/`commit.committer.date`;
  a commit's GitHub account (`author.user`) is a `User` only, so a bot's commits carry no account
  in GraphQL: it is recovered from the bot's no-reply e-mail, as GitHub attributes them in REST;
- reviews: `submittedAt` is `submitted_at`; pull requests: `baseRefName` is `base.ref`,
  `url` is `html_url`, and `state` MERGED is REST's `closed` with `merged: true`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

JSON = dict[str, Any]

#: Pull requests per page of the bulk query (GitHub allows 100; 50 keeps answers quick).
PAGE_SIZE = 50
#: Reviews and commits asked for per pull request; more are fetched by follow-up queries.
NESTED_SIZE = 100
#: Pull requests completed per follow-up query (each alias asks for up to two connections).
FOLLOW_UP_BATCH = 20

_ACTOR = "__typename login"
_PAGE_INFO = "pageInfo { hasNextPage endCursor }"
_REVIEW = f"fullDatabaseId state submittedAt author {{ {_ACTOR} }}"
_COMMIT = "commit { oid message authoredDate committedDate author { email user { login } } }"
_RATE_LIMIT = "rateLimit { cost remaining resetAt }"

#: The fields of a pull request the crawl needs, with the first page of its reviews and commits.
PULL_REQUEST_FIELDS = f"""
fragment PullRequestFields on PullRequest {{
  fullDatabaseId number title state isDraft body url
  createdAt updatedAt closedAt mergedAt merged
  additions deletions changedFiles baseRefName
  author {{ {_ACTOR} }}
  reviews(first: $nested) {{ {_PAGE_INFO} nodes {{ {_REVIEW} }} }}
  commits(first: $nested) {{ {_PAGE_INFO} nodes {{ {_COMMIT} }} }}
}}
"""

#: One page of a repository's pull requests, most recently updated first.
PULL_REQUESTS = (
    f"""
query PullRequests($owner: String!, $name: String!, $first: Int!, $after: String, $nested: Int!) {{
  {_RATE_LIMIT}
  repository(owner: $owner, name: $name) {{
    pullRequests(first: $first, after: $after, orderBy: {{field: UPDATED_AT, direction: DESC}}) {{
      totalCount
      {_PAGE_INFO}
      nodes {{ ...PullRequestFields }}
    }}
  }}
}}
"""
    + PULL_REQUEST_FIELDS
)


def pull_requests_variables(full_name: str, first: int, after: str | None) -> JSON:
    """The variables of `PULL_REQUESTS` for one page."""
    owner, name = full_name.split("/", 1)
    return {"owner": owner, "name": name, "first": first, "after": after, "nested": NESTED_SIZE}


def follow_up(full_name: str, wanted: Sequence[tuple[int, str, str]]) -> tuple[str, JSON]:
    """A query (and its variables) for the next page of nested connections of several PRs.

    `wanted` holds (PR number, "reviews" or "commits", cursor after which to continue); each PR
    is an alias `pr<number>` of `repository.pullRequest`, its connections continuing after their
    cursors.
    """
    owner, name = full_name.split("/", 1)
    variables: JSON = {"owner": owner, "name": name, "first": NESTED_SIZE}
    fields: dict[int, list[str]] = {}
    for index, (number, connection, cursor) in enumerate(wanted):
        variables[f"c{index}"] = cursor
        nodes = _REVIEW if connection == "reviews" else _COMMIT
        fields.setdefault(int(number), []).append(
            f"{connection}(first: $first, after: $c{index}) {{ {_PAGE_INFO} nodes {{ {nodes} }} }}"
        )
    cursors = "".join(f", $c{index}: String!" for index in range(len(wanted)))
    aliases = "\n    ".join(
        f"pr{number}: pullRequest(number: {number}) {{ {' '.join(parts)} }}"
        for number, parts in fields.items()
    )
    document = f"""
query PullRequestsMore($owner: String!, $name: String!, $first: Int!{cursors}) {{
  {_RATE_LIMIT}
  repository(owner: $owner, name: $name) {{
    {aliases}
  }}
}}
"""
    return document, variables


# -- GraphQL answers -> REST form ---------------------------------------------------------------

_BOT_NOREPLY = re.compile(r"^(?:\d+\+)?(?P<login>[^@+]+\[bot\])@users\.noreply\.github\.com$")


def _id(node: Mapping[str, Any]) -> int | None:
    value = node.get("fullDatabaseId")
    return int(value) if value is not None else None


def actor(node: Mapping[str, Any] | None) -> JSON | None:
    """A REST user object (`login`, `type`) from a GraphQL actor; None stays None."""
    if node is None:
        return None
    kind = str(node.get("__typename") or "User")
    login = str(node.get("login") or "")
    if kind == "Bot" and not login.endswith("[bot]"):
        login += "[bot]"
    return {"login": login, "type": kind}


def pull(node: Mapping[str, Any]) -> JSON:
    """A REST pull request detail object from a `PullRequestFields` node."""
    return {
        "id": _id(node),
        "number": int(node["number"]),
        "title": node.get("title"),
        "state": "open" if node.get("state") == "OPEN" else "closed",
        "user": actor(node.get("author")),
        "body": node.get("body"),
        "draft": bool(node.get("isDraft")),
        "html_url": node.get("url"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "closed_at": node.get("closedAt"),
        "merged_at": node.get("mergedAt"),
        "merged": bool(node.get("merged")),
        "additions": node.get("additions"),
        "deletions": node.get("deletions"),
        "changed_files": node.get("changedFiles"),
        "base": {"ref": node.get("baseRefName")},
    }


def review(node: Mapping[str, Any]) -> JSON:
    """A REST review object from a review node."""
    return {
        "id": _id(node),
        "user": actor(node.get("author")),
        "state": node.get("state"),
        "submitted_at": node.get("submittedAt"),
    }


def commit(node: Mapping[str, Any]) -> JSON:
    """A REST pull request commit object from a `PullRequestCommit` node."""
    data = node.get("commit") or {}
    author = data.get("author") or {}
    return {
        "sha": data.get("oid"),
        "commit": {
            "message": data.get("message"),
            "author": {"email": author.get("email"), "date": data.get("authoredDate")},
            "committer": {"date": data.get("committedDate")},
        },
        "author": _commit_account(author),
    }


def _commit_account(author: Mapping[str, Any]) -> JSON | None:
    user = author.get("user")
    if user is not None:
        return {"login": str(user.get("login") or ""), "type": "User"}
    match = _BOT_NOREPLY.match(str(author.get("email") or ""))
    return {"login": match["login"], "type": "Bot"} if match else None
