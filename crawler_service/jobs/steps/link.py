"""The `link` step: pull request -> issue closing references, by GitHub's rules.

Only PRs whose base is the repository's default branch close issues (GitHub's rule). References come
from the description and from the PR's commit messages; one link per (PR, issue), the description
winning as its source. The repository's links marker (`repositories.links_computed_at`) is written
in the same transaction as the links, so it exists only when the step succeeded for it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from crawler_service.data.links import extract_closing_references
from crawler_service.data.models import (
    SOURCE_COMMIT_MESSAGE,
    SOURCE_DESCRIPTION,
    Commit,
    PullRequest,
    Repository,
    repo_key,
)
from crawler_service.data.records import Link
from crawler_service.data.store import CrawlerStore
from crawler_service.jobs.registry import Output, StepContext
from crawler_service.jobs.steps import each_repository


def pull_links(
    repository: str, number: int, body: str, commit_messages: Iterable[str]
) -> list[Link]:
    """The closing links of one PR (`repository` is its `owner/name`), duplicates collapsed."""
    links: dict[tuple[str, int], Link] = {}
    sources = [(SOURCE_DESCRIPTION, body)]
    sources += [(SOURCE_COMMIT_MESSAGE, message) for message in commit_messages]
    for source, text in sources:
        for ref in extract_closing_references(text, repository):
            issue = (repo_key(ref.repository), ref.number)
            links.setdefault(issue, Link(number, issue[0], issue[1], source))
    return list(links.values())


@dataclass
class LinkStep:
    """See the module docstring."""

    store: CrawlerStore
    name: str = "link"

    async def run(self, ctx: StepContext) -> Output:
        counts = await each_repository(ctx, self.store, self._repository, "linked")
        return {"links": sum(counts)}

    async def _repository(self, key: str) -> int:
        repos = await self.store.select(
            sa.select(Repository.full_name, Repository.default_branch).where(
                Repository.repository == key
            )
        )
        if not repos:
            return 0  # never fetched: nothing to link, and no marker to write
        full_name, default_branch = repos[0]
        pulls = await self.store.select(
            sa.select(PullRequest.number, PullRequest.body).where(
                PullRequest.repository == key, PullRequest.base_ref == default_branch
            )
        )
        messages = await self._commit_messages(key)
        links = [
            link
            for number, body in pulls
            for link in pull_links(full_name, number, body, messages.get(number, []))
        ]
        await self.store.replace_links(key, links)
        return len(links)

    async def _commit_messages(self, key: str) -> dict[int, list[str]]:
        rows = await self.store.select(
            sa.select(Commit.pr_number, Commit.message)
            .where(Commit.repository == key)
            .order_by(Commit.pr_number, Commit.position)
        )
        messages: dict[int, list[str]] = defaultdict(list)
        for number, message in rows:
            messages[number].append(message)
        return messages
