"""The fake GitHub's GraphQL objects, built from the same REST-shaped dataset the REST API serves.

Objects are dicts for graphql-core's default resolvers; connections and other fields with arguments
are functions called with those arguments, so only the page asked for is built. GitHub's GraphQL
differs from its REST API in ways a client must map back, and the fake keeps those differences:
bot logins lack REST's `[bot]` suffix, a commit's GitHub account is a `User` or nothing (a bot's
commits have none), ids are `fullDatabaseId` strings (BigInt), a PR's `body` is never null,
`state` is OPEN, CLOSED or MERGED. Cursors are opaque; a pull request cursor holds its sort key,
so pages stay consistent while PRs are updated, as GitHub's do.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

from graphql import GraphQLError

from ghpulse.testing.fake_github.dataset import Dataset, RepoData
from ghpulse.testing.fake_github.routes import MAX_PR_COMMITS

JSON = dict[str, Any]
WEB = "https://github.com"
_ACTOR_TYPES = frozenset({"User", "Bot", "Organization"})


class NotFound(GraphQLError):
    """GitHub's NOT_FOUND error (the `type` is moved to the top level by the server)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"type": "NOT_FOUND"})


# -- connections ----------------------------------------------------------------------------------


def _cursor(key: Any) -> str:
    return base64.b64encode(b"cursor:v2:" + json.dumps(key).encode()).decode()


def _key(cursor: str) -> Any:
    try:
        raw = base64.b64decode(cursor.encode(), validate=True)
        if not raw.startswith(b"cursor:v2:"):
            raise ValueError(cursor)
        return json.loads(raw[len(b"cursor:v2:") :])
    except ValueError:
        raise GraphQLError(f"`{cursor}` does not appear to be a valid cursor.") from None


def connection(
    items: Sequence[Any],
    build: Callable[[Any], JSON],
    args: JSON,
    key: Callable[[Any], Any] = lambda item: None,
    descending: bool = False,
) -> JSON:
    """One page of `items` (sorted by `key`, or in list order when `key` gives None) per the
    `first`/`after` or `last`/`before` arguments, as a GitHub connection object."""
    keys = [key(item) if key(item) is not None else index for index, item in enumerate(items)]
    pairs = list(zip(keys, items, strict=True))

    def beyond(k: Any, bound: Any) -> bool:
        return bool(k < bound) if descending else bool(k > bound)

    if args.get("after") is not None:
        bound = _comparable(_key(args["after"]))
        pairs = [(k, item) for k, item in pairs if beyond(_comparable(k), bound)]
    if args.get("before") is not None:
        bound = _comparable(_key(args["before"]))
        pairs = [(k, item) for k, item in pairs if beyond(bound, _comparable(k))]
    before, after = False, False
    if args.get("first") is not None:
        after = len(pairs) > args["first"]
        pairs = pairs[: args["first"]]
    if args.get("last") is not None:
        before = len(pairs) > args["last"]
        pairs = pairs[max(len(pairs) - args["last"], 0) :]
    edges = [{"cursor": _cursor(k), "node": build(item)} for k, item in pairs]
    return {
        "totalCount": len(items),
        "edges": edges,
        "nodes": [edge["node"] for edge in edges],
        "pageInfo": {
            "hasNextPage": after,
            "hasPreviousPage": before or args.get("after") is not None,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _comparable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _empty(_info: Any, **args: Any) -> JSON:
    return connection([], lambda item: item, args)


# -- actors ---------------------------------------------------------------------------------------


def actor(user: JSON | None) -> JSON | None:
    """A GraphQL actor from a REST user: bots lose the `[bot]` suffix of their REST login."""
    if user is None:
        return None
    kind = user.get("type") if user.get("type") in _ACTOR_TYPES else "User"
    login = str(user.get("login") or "")
    if kind == "Bot":
        login = login.removesuffix("[bot]")
    return {
        "__typename": kind,
        "id": user.get("node_id") or f"U_{login}",
        "databaseId": user.get("id"),
        "login": login,
        "name": None,
        "avatarUrl": user.get("avatar_url") or f"{WEB}/{login}.png",
        "resourcePath": f"/{login}",
        "url": f"{WEB}/{login}",
    }


def _git_actor(person: JSON | None, account: JSON | None) -> JSON | None:
    if person is None:
        return None
    user = actor(account) if account is not None and account.get("type") == "User" else None
    return {**person, "user": user}


# -- objects --------------------------------------------------------------------------------------


def root(dataset: Dataset, rate_limit: JSON) -> JSON:
    """The query root over `dataset`; `rate_limit` is the `RateLimit` object of this query."""

    def repository(_info: Any, owner: str, name: str, **_follow_renames: Any) -> JSON:
        repo = dataset.repo(f"{owner}/{name}")
        if repo is None:
            raise NotFound(f"Could not resolve to a Repository with the name '{owner}/{name}'.")
        return repository_node(repo)

    viewer = actor({"login": "ghpulse-fake", "type": "User", "id": 1})
    return {
        "id": "Q_root",
        "rateLimit": lambda _info, **_dry_run: rate_limit,
        "repository": repository,
        "viewer": viewer,
    }


def repository_node(repo: RepoData) -> JSON:
    """A `Repository`."""
    data = repo.repository
    full_name = repo.full_name
    branch = data.get("default_branch")

    def pull_requests(_info: Any, **args: Any) -> JSON:
        pulls = [p for p in repo.pulls.values() if _matches(p, args)]
        order = args.get("orderBy") or {"field": "CREATED_AT", "direction": "ASC"}
        field = "updated_at" if order["field"] == "UPDATED_AT" else "created_at"
        descending = order["direction"] == "DESC"
        pulls.sort(key=lambda p: (p[field], p["number"]), reverse=descending)
        return connection(
            pulls,
            lambda p: pull_node(repo, p),
            args,
            key=lambda p: [p[field], p["number"]],
            descending=descending,
        )

    def pull_request(_info: Any, number: int) -> JSON:
        pull = repo.pulls.get(number)
        if pull is None:
            raise NotFound(f"Could not resolve to a PullRequest with the number of {number}.")
        return pull_node(repo, pull)

    def releases(_info: Any, **args: Any) -> JSON:
        order = args.get("orderBy") or {"field": "CREATED_AT", "direction": "DESC"}
        field = "tag_name" if order["field"] == "NAME" else "created_at"
        descending = order["direction"] == "DESC"
        items = sorted(repo.releases, key=lambda r: (r[field], r["id"]), reverse=descending)
        return connection(items, _release_node, args)

    return {
        "__typename": "Repository",
        "id": data.get("node_id"),
        "databaseId": data.get("id"),
        "name": data.get("name"),
        "nameWithOwner": full_name,
        "description": data.get("description"),
        "createdAt": data.get("created_at"),
        "updatedAt": data.get("updated_at"),
        "pushedAt": data.get("pushed_at"),
        "isArchived": bool(data.get("archived")),
        "isFork": bool(data.get("fork")),
        "isPrivate": bool(data.get("private")),
        "owner": actor(data.get("owner")),
        "defaultBranchRef": {"id": f"REF_{branch}", "name": branch, "prefix": "refs/heads/"}
        if branch
        else None,
        "resourcePath": f"/{full_name}",
        "url": data.get("html_url") or f"{WEB}/{full_name}",
        "pullRequests": pull_requests,
        "pullRequest": pull_request,
        "releases": releases,
        "issues": _empty,
    }


def _matches(pull: JSON, args: JSON) -> bool:
    states = args.get("states")
    if states and _state(pull) not in states:
        return False
    base = args.get("baseRefName")
    head = args.get("headRefName")
    if base is not None and (pull.get("base") or {}).get("ref") != base:
        return False
    return head is None or (pull.get("head") or {}).get("ref") == head


def _state(pull: JSON) -> str:
    if pull.get("merged_at") or pull.get("merged"):
        return "MERGED"
    return "OPEN" if pull.get("state") == "open" else "CLOSED"


def pull_node(repo: RepoData, pull: JSON) -> JSON:
    """A `PullRequest` from a REST pull request detail object."""
    number = int(pull["number"])
    base, head = pull.get("base") or {}, pull.get("head") or {}
    url = pull.get("html_url") or f"{WEB}/{repo.full_name}/pull/{number}"

    def reviews(_info: Any, **args: Any) -> JSON:
        items = [
            r
            for r in repo.reviews.get(number, [])
            if (not args.get("states") or r.get("state") in args["states"])
            and (args.get("author") is None or _login(r.get("user")) == args["author"])
        ]
        return connection(items, _review_node, args)

    def commits(_info: Any, **args: Any) -> JSON:
        items = repo.commits.get(number, [])[:MAX_PR_COMMITS]
        return connection(items, lambda c: _commit_node(url, c), args)

    return {
        "__typename": "PullRequest",
        "id": pull.get("node_id") or f"PR_{number}",
        "databaseId": pull.get("id"),
        "fullDatabaseId": None if pull.get("id") is None else str(pull["id"]),
        "number": number,
        "title": pull.get("title") or "",
        "body": pull.get("body") or "",
        "url": url,
        "permalink": url,
        "resourcePath": f"/{repo.full_name}/pull/{number}",
        "state": _state(pull),
        "closed": pull.get("state") == "closed",
        "isDraft": bool(pull.get("draft")),
        "merged": _state(pull) == "MERGED",
        "createdAt": pull.get("created_at"),
        "updatedAt": pull.get("updated_at"),
        "closedAt": pull.get("closed_at"),
        "mergedAt": pull.get("merged_at"),
        "additions": int(pull.get("additions") or 0),
        "deletions": int(pull.get("deletions") or 0),
        "changedFiles": int(pull.get("changed_files") or 0),
        "baseRefName": base.get("ref") or "",
        "baseRefOid": base.get("sha") or "0" * 40,
        "headRefName": head.get("ref") or "",
        "headRefOid": head.get("sha") or "0" * 40,
        "author": actor(pull.get("user")),
        "authorAssociation": pull.get("author_association") or "NONE",
        "mergedBy": actor(pull.get("merged_by")),
        "repository": lambda _info: repository_node(repo),
        "reviews": reviews,
        "commits": commits,
        "labels": _empty,
        "closingIssuesReferences": _empty,
    }


def _login(user: JSON | None) -> str | None:
    return None if user is None else str(user.get("login"))


def _review_node(review: JSON) -> JSON:
    return {
        "__typename": "PullRequestReview",
        "id": review.get("node_id") or f"PRR_{review['id']}",
        "databaseId": review.get("id"),
        "fullDatabaseId": str(review["id"]),
        "state": review.get("state") or "COMMENTED",
        "submittedAt": review.get("submitted_at"),
        "createdAt": review.get("submitted_at"),
        "body": review.get("body") or "",
        "url": review.get("html_url") or "",
        "author": actor(review.get("user")),
        "authorAssociation": review.get("author_association") or "NONE",
    }


def _commit_node(pull_url: str, item: JSON) -> JSON:
    data = item.get("commit") or {}
    sha = str(item["sha"])
    message = str(data.get("message") or "")
    headline, _, body = message.partition("\n")
    commit = {
        "__typename": "Commit",
        "id": item.get("node_id") or f"C_{sha}",
        "oid": sha,
        "abbreviatedOid": sha[:7],
        "message": message,
        "messageHeadline": headline,
        "messageBody": body.strip("\n"),
        "authoredDate": (data.get("author") or {}).get("date"),
        "committedDate": (data.get("committer") or {}).get("date"),
        "additions": 0,
        "deletions": 0,
        "author": _git_actor(data.get("author"), item.get("author")),
        "committer": _git_actor(data.get("committer"), item.get("committer")),
        "resourcePath": f"/commit/{sha}",
        "url": item.get("html_url") or "",
    }
    return {
        "__typename": "PullRequestCommit",
        "id": f"PRC_{sha}",
        "commit": commit,
        "resourcePath": f"{pull_url.removeprefix(WEB)}/commits/{sha}",
        "url": f"{pull_url}/commits/{sha}",
    }


def _release_node(release: JSON) -> JSON:
    return {
        "__typename": "Release",
        "id": release.get("node_id") or f"RE_{release['id']}",
        "databaseId": release.get("id"),
        "tagName": release.get("tag_name") or "",
        "name": release.get("name"),
        "description": release.get("body"),
        "descriptionHTML": release.get("body"),
        "isDraft": bool(release.get("draft")),
        "isPrerelease": bool(release.get("prerelease")),
        "createdAt": release.get("created_at"),
        "publishedAt": release.get("published_at"),
        "updatedAt": release.get("published_at") or release.get("created_at"),
        "url": release.get("html_url") or "",
    }
