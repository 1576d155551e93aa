"""The fake GitHub's endpoints: from a path and query to a status and a JSON body.

Pure functions of the dataset; the server adds headers (Link, ETag, rate limit) and faults.
Behaviour follows GitHub's documented defaults: `per_page` 30 (max 100), pull requests listed
`state=open` and `sort=created` by default, `direction` desc for created and asc otherwise, and
at most 250 commits per pull request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ghpulse.testing.fake_github import shapes
from ghpulse.testing.fake_github.dataset import Dataset, RepoData

JSON = dict[str, Any]
Query = Mapping[str, str]
MAX_PR_COMMITS = 250
DOCS = "https://docs.github.com/rest"


@dataclass(frozen=True)
class Answer:
    """What an endpoint answers. `last_page` is set for paginated lists."""

    status: int
    body: Any
    page: int = 1
    last_page: int | None = None
    #: Whether the request counts against the primary rate limit (`/rate_limit` does not).
    charged: bool = True


def not_found() -> Answer:
    """GitHub's 404."""
    return Answer(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})


def paginate(items: list[Any], query: Query) -> Answer:
    """One page of `items` per the `page` and `per_page` query parameters."""
    per_page = min(max(_int(query.get("per_page"), 30), 1), 100)
    page = max(_int(query.get("page"), 1), 1)
    last_page = max(math.ceil(len(items) / per_page), 1)
    start = (page - 1) * per_page
    return Answer(200, items[start : start + per_page], page=page, last_page=last_page)


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _repository(repo: RepoData, _query: Query, _match: re.Match[str]) -> Answer:
    return Answer(200, repo.repository)


def _pulls(repo: RepoData, query: Query, _match: re.Match[str]) -> Answer:
    state = query.get("state", "open")
    sort = query.get("sort", "created")
    descending = query.get("direction", "desc" if sort == "created" else "asc") == "desc"
    key_field = "updated_at" if sort == "updated" else "created_at"
    pulls = [
        p
        for p in repo.pulls.values()
        if state in ("all", p["state"]) and query.get("base", p["base"]["ref"]) == p["base"]["ref"]
    ]
    pulls.sort(key=lambda p: (p[key_field], p["number"]), reverse=descending)
    return paginate([shapes.list_item(p) for p in pulls], query)


def _pull(repo: RepoData, _query: Query, match: re.Match[str]) -> Answer:
    pr = repo.pulls.get(int(match["number"]))
    return Answer(200, pr) if pr is not None else not_found()


def _reviews(repo: RepoData, query: Query, match: re.Match[str]) -> Answer:
    number = int(match["number"])
    if number not in repo.pulls:
        return not_found()
    return paginate(repo.reviews.get(number, []), query)


def _commits(repo: RepoData, query: Query, match: re.Match[str]) -> Answer:
    number = int(match["number"])
    if number not in repo.pulls:
        return not_found()
    return paginate(repo.commits.get(number, [])[:MAX_PR_COMMITS], query)


def _releases(repo: RepoData, query: Query, _match: re.Match[str]) -> Answer:
    releases = sorted(repo.releases, key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return paginate(releases, query)


RepoEndpoint = Callable[[RepoData, Query, re.Match[str]], Answer]
_REPO = r"^/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"
_REPO_ROUTES: list[tuple[re.Pattern[str], RepoEndpoint]] = [
    (re.compile(_REPO + r"$"), _repository),
    (re.compile(_REPO + r"/pulls$"), _pulls),
    (re.compile(_REPO + r"/pulls/(?P<number>\d+)$"), _pull),
    (re.compile(_REPO + r"/pulls/(?P<number>\d+)/reviews$"), _reviews),
    (re.compile(_REPO + r"/pulls/(?P<number>\d+)/commits$"), _commits),
    (re.compile(_REPO + r"/releases$"), _releases),
]
_ORG_REPOS = re.compile(r"^/orgs/(?P<org>[^/]+)/repos$")


def route(dataset: Dataset, path: str, query: Query, rate: JSON, user: str | None = None) -> Answer:
    """Answer `GET path?query`; `rate` is the `core` object of `/rate_limit`, `user` the login
    of the authenticated user (`GET /user`; None: the request carries no token)."""
    if path.rstrip("/") == "/rate_limit":
        return Answer(200, {"resources": {"core": rate}, "rate": rate}, charged=False)
    if path.rstrip("/") == "/user":
        if user is None:
            return Answer(401, {"message": "Requires authentication"})
        return Answer(200, {"login": user, "id": 1, "type": "User"})
    match = _ORG_REPOS.match(path)
    if match:
        org = match["org"]
        return (
            paginate(dataset.org_repositories(org), query)
            if dataset.has_owner(org)
            else (not_found())
        )
    for pattern, endpoint in _REPO_ROUTES:
        match = pattern.match(path)
        if match:
            repo = dataset.repo(f"{match['owner']}/{match['name']}")
            return endpoint(repo, query, match) if repo is not None else not_found()
    return not_found()


def link_header(answer: Answer, base: str, query: Mapping[str, str]) -> dict[str, str]:
    """The `Link` header of a page of a listing at `base` (scheme, host and path), if paged."""
    if answer.last_page is None or (answer.last_page <= 1 and answer.page <= 1):
        return {}

    def page_url(page: int) -> str:
        rest = {k: v for k, v in query.items() if k != "page"}
        return base + "?" + urlencode({**rest, "page": page})

    rels = []
    if answer.page < answer.last_page:
        rels += [("next", answer.page + 1), ("last", answer.last_page)]
    if answer.page > 1:
        rels += [("prev", min(answer.page - 1, answer.last_page)), ("first", 1)]
    return {"Link": ", ".join(f'<{page_url(page)}>; rel="{rel}"' for rel, page in rels)}
