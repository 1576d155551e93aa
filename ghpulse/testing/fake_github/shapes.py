"""Builders of GitHub REST objects in their real shapes (trimmed of URL templates nobody reads).

The fake serves exactly what the dataset holds, so these only matter when a dataset is generated
or a test adds objects; recorded real data keeps all of GitHub's fields.
"""

from __future__ import annotations

import hashlib
import zlib
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]
API = "https://api.github.com"
WEB = "https://github.com"

#: Fields of a pull request that only its detail endpoint returns, not the list endpoint.
DETAIL_ONLY_FIELDS = frozenset(
    {
        "merged",
        "mergeable",
        "rebaseable",
        "mergeable_state",
        "merged_by",
        "comments",
        "review_comments",
        "maintainer_can_modify",
        "commits",
        "additions",
        "deletions",
        "changed_files",
    }
)


def iso(moment: datetime) -> str:
    """GitHub's timestamp format: UTC, seconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """Parse a GitHub timestamp."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stable_id(*parts: object) -> int:
    """A deterministic positive id for generated objects."""
    return zlib.crc32("/".join(map(str, parts)).encode()) + 1


def sha(*parts: object) -> str:
    """A deterministic 40-hex commit sha."""
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


def user(login: str, *, kind: str = "User") -> JSON:
    """A simple user (`kind` is "User", "Bot" or "Organization")."""
    return {
        "login": login,
        "id": stable_id("user", login),
        "node_id": f"U_{stable_id('user', login)}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{stable_id('user', login)}?v=4",
        "url": f"{API}/users/{login}",
        "html_url": f"{WEB}/{login}",
        "type": kind,
        "site_admin": False,
    }


def repository(
    owner: str,
    name: str,
    *,
    created_at: str,
    owner_kind: str = "Organization",
    default_branch: str = "main",
    archived: bool = False,
    description: str = "",
) -> JSON:
    """A repository object as `GET /repos/{owner}/{repo}` returns it."""
    full_name = f"{owner}/{name}"
    return {
        "id": stable_id("repo", full_name),
        "node_id": f"R_{stable_id('repo', full_name)}",
        "name": name,
        "full_name": full_name,
        "private": False,
        "owner": user(owner, kind=owner_kind),
        "html_url": f"{WEB}/{full_name}",
        "description": description,
        "fork": False,
        "url": f"{API}/repos/{full_name}",
        "created_at": created_at,
        "updated_at": created_at,
        "pushed_at": created_at,
        "default_branch": default_branch,
        "archived": archived,
        "disabled": False,
        "visibility": "public",
        "open_issues_count": 0,
        "language": "Python",
    }


def _ref(repo: JSON, ref: str, head_sha: str) -> JSON:
    return {
        "label": f"{repo['owner']['login']}:{ref}",
        "ref": ref,
        "sha": head_sha,
        "user": repo["owner"],
        "repo": repo,
    }


def pull(
    repo: JSON,
    number: int,
    *,
    title: str,
    author: JSON | None,
    created_at: str,
    body: str | None = "",
    updated_at: str | None = None,
    state: str = "open",
    draft: bool = False,
    closed_at: str | None = None,
    merged_at: str | None = None,
    merged_by: JSON | None = None,
    base_ref: str | None = None,
    head_ref: str | None = None,
    additions: int = 0,
    deletions: int = 0,
    changed_files: int = 0,
    commits: int = 0,
) -> JSON:
    """A pull request in its detail shape (`GET /repos/{o}/{r}/pulls/{n}`)."""
    full_name = repo["full_name"]
    head_sha = sha(full_name, "head", number)
    return {
        "url": f"{API}/repos/{full_name}/pulls/{number}",
        "id": stable_id("pull", full_name, number),
        "node_id": f"PR_{stable_id('pull', full_name, number)}",
        "html_url": f"{WEB}/{full_name}/pull/{number}",
        "issue_url": f"{API}/repos/{full_name}/issues/{number}",
        "number": number,
        "state": state,
        "locked": False,
        "title": title,
        "user": author,
        "body": body,
        "labels": [],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": created_at,
        "updated_at": updated_at or created_at,
        "closed_at": closed_at,
        "merged_at": merged_at,
        "merge_commit_sha": sha(full_name, "merge", number) if merged_at else None,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": _ref(repo, head_ref or f"topic-{number}", head_sha),
        "base": _ref(repo, base_ref or repo["default_branch"], sha(full_name, "base", number)),
        "author_association": "MEMBER",
        "auto_merge": None,
        "draft": draft,
        "merged": merged_at is not None,
        "mergeable": None if state == "closed" else True,
        "rebaseable": None if state == "closed" else True,
        "mergeable_state": "unknown" if state == "closed" else "clean",
        "merged_by": merged_by if merged_at else None,
        "comments": 0,
        "review_comments": 0,
        "maintainer_can_modify": False,
        "commits": commits,
        "additions": additions,
        "deletions": deletions,
        "changed_files": changed_files,
    }


def list_item(detail: JSON) -> JSON:
    """The list-endpoint shape of a pull request: its detail without the detail-only fields."""
    return {key: value for key, value in detail.items() if key not in DETAIL_ONLY_FIELDS}


def review(
    pr: JSON, *, reviewer: JSON | None, state: str, submitted_at: str, body: str = ""
) -> JSON:
    """A pull request review (state APPROVED, CHANGES_REQUESTED, COMMENTED or DISMISSED)."""
    review_id = stable_id("review", pr["url"], submitted_at, reviewer and reviewer["login"])
    return {
        "id": review_id,
        "node_id": f"PRR_{review_id}",
        "user": reviewer,
        "body": body,
        "state": state,
        "html_url": f"{pr['html_url']}#pullrequestreview-{review_id}",
        "pull_request_url": pr["url"],
        "author_association": "MEMBER",
        "submitted_at": submitted_at,
        "commit_id": pr["head"]["sha"],
    }


def commit(
    full_name: str,
    commit_sha: str,
    *,
    message: str,
    author_name: str,
    author_email: str,
    author_date: str,
    committer_date: str | None = None,
    author: JSON | None = None,
) -> JSON:
    """A pull request commit (`author` is None when the e-mail matches no GitHub account)."""
    committer = {"name": author_name, "email": author_email, "date": committer_date or author_date}
    return {
        "sha": commit_sha,
        "node_id": f"C_{commit_sha[:12]}",
        "commit": {
            "author": {"name": author_name, "email": author_email, "date": author_date},
            "committer": committer,
            "message": message,
            "comment_count": 0,
        },
        "url": f"{API}/repos/{full_name}/commits/{commit_sha}",
        "html_url": f"{WEB}/{full_name}/commit/{commit_sha}",
        "author": author,
        "committer": author,
        "parents": [],
    }


def release(
    repo: JSON,
    tag: str,
    *,
    created_at: str,
    published_at: str | None,
    author: JSON,
    draft: bool = False,
    prerelease: bool = False,
) -> JSON:
    """A release (`published_at` is None for drafts)."""
    release_id = stable_id("release", repo["full_name"], tag)
    return {
        "url": f"{API}/repos/{repo['full_name']}/releases/{release_id}",
        "html_url": f"{WEB}/{repo['full_name']}/releases/tag/{tag}",
        "id": release_id,
        "node_id": f"RE_{release_id}",
        "tag_name": tag,
        "target_commitish": repo["default_branch"],
        "name": tag,
        "draft": draft,
        "prerelease": prerelease,
        "author": author,
        "created_at": created_at,
        "published_at": published_at,
        "body": "",
        "assets": [],
    }
