"""The `upsert` step: raw GitHub items -> the typed tables, idempotently.

A crawl turns only the raw items its fetch stored (still `pending`) into rows; `recalculate`
rebuilds every PR from the stored raw data. Real GitHub data has nulls where one expects values
(a deleted account's `user`, a `body`), so the conversions default them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from common.jobs import RecalculateSpec
from crawler_service.data.models import (
    RAW_COMMITS,
    RAW_PULL,
    RAW_RELEASE,
    RAW_REPOSITORY,
    RAW_REVIEWS,
    STATE_CLOSED,
    STATE_MERGED,
    STATE_OPEN,
    repo_key,
)
from crawler_service.data.records import Row, StoredRaw
from crawler_service.data.store import CrawlerStore
from crawler_service.jobs.registry import Output, StepContext
from crawler_service.jobs.steps import each_repository, parse_time

_PR_KINDS = (RAW_PULL, RAW_REVIEWS, RAW_COMMITS)
#: PRs written per transaction.
BATCH = 100


def _login(user: Any) -> str:
    return str(user.get("login") or "") if isinstance(user, dict) else ""


def _is_bot(user: Any) -> bool:
    if not isinstance(user, dict):
        return False
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


def repository_row(repository: str, data: dict[str, Any], now: Any) -> Row:
    """A `repositories` row from a GitHub repository object."""
    full_name = str(data.get("full_name") or repository)
    return {
        "repository": repository,
        "full_name": full_name,
        "owner": full_name.split("/", 1)[0].lower(),
        "default_branch": str(data.get("default_branch") or "main"),
        "archived": bool(data.get("archived")),
        "updated_at": now,
    }


def pull_state(data: dict[str, Any]) -> str:
    """open | merged | closed (closed without merging)."""
    if data.get("merged_at") or data.get("merged"):
        return STATE_MERGED
    return STATE_OPEN if data.get("state") == "open" else STATE_CLOSED


def pull_row(repository: str, data: dict[str, Any]) -> Row:
    """A `pull_requests` row (metrics left to the classify step) from a PR detail object."""
    return {
        "repository": repository,
        "number": int(data["number"]),
        "title": str(data.get("title") or ""),
        "state": pull_state(data),
        "author": _login(data.get("user")),
        "author_is_bot": _is_bot(data.get("user")),
        "draft": bool(data.get("draft")),
        "base_ref": str((data.get("base") or {}).get("ref") or ""),
        "created_at": parse_time(data["created_at"]),
        "updated_at": parse_time(data["updated_at"]),
        "closed_at": parse_time(data.get("closed_at")),
        "merged_at": parse_time(data.get("merged_at")),
        "additions": int(data.get("additions") or 0),
        "deletions": int(data.get("deletions") or 0),
        "changed_files": int(data.get("changed_files") or 0),
        "body": str(data.get("body") or ""),
        "url": str(data.get("html_url") or ""),
    }


def review_rows(repository: str, number: int, reviews: list[dict[str, Any]]) -> list[Row]:
    """`reviews` rows; a review listed twice (GitHub pages can shift) is kept once."""
    rows = {
        int(review["id"]): {
            "repository": repository,
            "pr_number": number,
            "review_id": int(review["id"]),
            "author": _login(review.get("user")),
            "author_is_bot": _is_bot(review.get("user")),
            "state": str(review.get("state") or ""),
            "submitted_at": parse_time(review.get("submitted_at")),
        }
        for review in reviews
    }
    return list(rows.values())


def commit_rows(repository: str, number: int, commits: list[dict[str, Any]]) -> list[Row]:
    """`commits` rows, in the order GitHub lists them."""
    rows: dict[str, Row] = {}
    for position, item in enumerate(commits):
        commit = item.get("commit") or {}
        rows.setdefault(
            str(item["sha"]),
            {
                "repository": repository,
                "pr_number": number,
                "sha": str(item["sha"]),
                "position": position,
                "message": str(commit.get("message") or ""),
                "author_login": _login(item.get("author")),
                "authored_at": parse_time((commit.get("author") or {}).get("date")),
                "committed_at": parse_time((commit.get("committer") or {}).get("date")),
            },
        )
    return list(rows.values())


def release_row(repository: str, data: dict[str, Any]) -> Row | None:
    """A `releases` row, or None for a draft (never published)."""
    if data.get("draft") or not data.get("published_at"):
        return None
    return {
        "repository": repository,
        "release_id": int(data["id"]),
        "tag_name": str(data.get("tag_name") or ""),
        "prerelease": bool(data.get("prerelease")),
        "published_at": parse_time(data["published_at"]),
    }


@dataclass
class UpsertStep:
    """See the module docstring."""

    store: CrawlerStore
    name: str = "upsert"

    async def run(self, ctx: StepContext) -> Output:
        rebuild = isinstance(ctx.spec, RecalculateSpec)

        async def upsert(repository: str) -> int:
            return await self._repository(repository, rebuild)

        counts = await each_repository(ctx, self.store, upsert, "upserted")
        return {"prs_upserted": sum(counts)}

    async def _repository(self, repository: str, rebuild: bool) -> int:
        key = repo_key(repository)
        stored = await self.store.raw_items(key, [RAW_REPOSITORY])
        if stored:
            await self.store.upsert_repository(
                repository_row(key, stored[0].data, self.store.clock.now())
            )
        pending = await self.store.raw_items(key, _PR_KINDS, pending_only=not rebuild)
        numbers = sorted({item.key for item in pending}, key=int)
        items = pending if rebuild else await self.store.raw_items(key, _PR_KINDS, keys=numbers)
        by_number: dict[str, dict[str, Any]] = defaultdict(dict)
        for item in items:
            by_number[item.key][item.kind] = item.data
        pulls = [_pull_entry(key, by_number[n]) for n in numbers if RAW_PULL in by_number[n]]
        for start in range(0, len(pulls), BATCH):
            await self.store.replace_pulls(key, pulls[start : start + BATCH])
        await self._releases(key)
        await self.store.mark_upserted(pending)
        return len(pulls)

    async def _releases(self, key: str) -> None:
        raw: list[StoredRaw] = await self.store.raw_items(key, [RAW_RELEASE])
        rows = [row for item in raw if (row := release_row(key, item.data)) is not None]
        await self.store.replace_releases(key, rows)


def _pull_entry(key: str, raw: dict[str, Any]) -> tuple[Row, list[Row], list[Row]]:
    number = int(raw[RAW_PULL]["number"])
    return (
        pull_row(key, raw[RAW_PULL]),
        review_rows(key, number, raw.get(RAW_REVIEWS) or []),
        commit_rows(key, number, raw.get(RAW_COMMITS) or []),
    )
