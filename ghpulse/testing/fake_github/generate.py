"""Generate the bundled sample dataset: `python -m ghpulse.testing.fake_github.generate --out DIR`.

Deterministic for a seed. The organization `ghpulse-demo` has three active repositories (`api`,
`web`, `infra`) and an archived one (`legacy`): a few hundred pull requests over six months of
2024, with reviews (self-reviews and bot reviewers among them), commits, releases, drafts,
open/closed/merged states and PRs against a non-default base branch.

`ghpulse-demo/api` PRs #1-#14 are hand-written showcases of closing references (see `SHOWCASE`);
their expected links are listed beside each one so tests can check the link step against them.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ghpulse.testing.fake_github import shapes
from ghpulse.testing.fake_github.dataset import Dataset, RepoData

JSON = dict[str, Any]
ORG = "ghpulse-demo"
START = datetime(2024, 1, 1, tzinfo=UTC)
END = START + timedelta(days=182)
HUMANS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
BOT_AUTHORS = ("dependabot[bot]", "renovate[bot]")
BOT_REVIEWERS = ("github-actions[bot]", "dependabot[bot]")
RELEASE_BRANCH = "release/1.x"
#: (name, number of generated PRs, archived)
REPOSITORIES = (("api", 110, False), ("web", 90, False), ("infra", 60, False), ("legacy", 12, True))


@dataclass(frozen=True)
class Showcase:
    """A hand-written PR of `ghpulse-demo/api`: body, commit messages, base, expected links."""

    title: str
    body: str | None
    commits: tuple[str, ...] = ("Implement the change",)
    base: str = "main"
    #: (repository, issue number, source) per expected closing link.
    links: tuple[tuple[str, int, str], ...] = field(default=())


API = f"{ORG}/api"
SHOWCASE = (
    Showcase("Retry flaky uploads", "This fixes #12 by retrying.", links=((API, 12, "body"),)),
    Showcase("Share the client", f"Closes {ORG}/web#3", links=((f"{ORG}/web", 3, "body"),)),
    Showcase(
        "Validate input",
        f"resolves https://github.com/{ORG}/api/issues/7",
        links=((API, 7, "body"),),
    ),
    Showcase(
        "Handle empty input",
        "No keywords here.",
        ("Fix #5: handle empty input",),
        links=((API, 5, "commit"),),
    ),
    Showcase("Wording", "This discloses #4 and prefixes #6 - not links."),
    Showcase("Hidden reference", "Cleanup.\n<!-- fixes #8 -->\n"),
    Showcase("Code sample", "Example:\n```\nfixes #9\n```\nDone."),
    Showcase("Inline code", "Write `fixes #10` in your PR to close an issue."),
    Showcase("Two issues", "fixes #1, #2", links=((API, 1, "body"),)),
    Showcase(
        "Shouting",
        "FIXES #13 and Resolved #14",
        links=((API, 13, "body"), (API, 14, "body")),
    ),
    Showcase("Backport", "fixes #15", base=RELEASE_BRANCH),
    Showcase(
        "Duplicate reference",
        "closes #16",
        ("closes #16", "Closes #16 again"),
        links=((API, 16, "body"), (API, 16, "commit")),
    ),
    Showcase("No description", None),
    Showcase("Upstream fix", "fixes octo-org/other#21", links=(("octo-org/other", 21, "body"),)),
)
BODIES = (
    "Small refactor.",
    "Adds tests.",
    "Bumps the dependency.",
    "Follow-up to review comments.",
    "",
)
REFERENCES = ("fixes #{n}", "Closes #{n}", "resolves {org}/web#{n}", "Fixed #{n}", "refs #{n}")


class Generator:
    """Builds one dataset from a seeded random generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def dataset(self) -> Dataset:
        """The whole sample."""
        repos = [self.repository(name, count, archived) for name, count, archived in REPOSITORIES]
        return Dataset(repos, {ORG: list(HUMANS)})

    def repository(self, name: str, count: int, archived: bool) -> RepoData:
        """One repository with `count` generated PRs (plus the showcases in `api`)."""
        created = START - timedelta(days=400 if archived else 200)
        repo = shapes.repository(ORG, name, created_at=shapes.iso(created), archived=archived)
        data = RepoData(repo, releases=self.releases(repo, archived))
        if name == "api":
            for showcase in SHOWCASE:
                self.add_showcase(data, showcase)
        span = (START, START + timedelta(days=30)) if archived else (START, END)
        moments = sorted(self.moment(*span) for _ in range(count))
        for created_at in moments:
            self.add_random(data, created_at, archived)
        return data

    def moment(self, low: datetime, high: datetime) -> datetime:
        seconds = self.rng.uniform(0, (high - low).total_seconds())
        return (low + timedelta(seconds=seconds)).replace(microsecond=0)

    def releases(self, repo: JSON, archived: bool) -> list[JSON]:
        """A release every one to three weeks; the newest is a draft, some are prereleases."""
        releases, moment, minor = [], START + timedelta(days=self.rng.randint(5, 15)), 1
        end = START + timedelta(days=40) if archived else END
        while moment < end:
            prerelease = self.rng.random() < 0.15
            tag = f"v1.{minor}.0" + ("-rc.1" if prerelease else "")
            releases.append(self.release(repo, tag, moment, prerelease=prerelease))
            moment += timedelta(days=self.rng.randint(7, 21), hours=self.rng.randint(0, 23))
            minor += 1
        if not archived:
            draft = shapes.release(
                repo,
                f"v1.{minor}.0",
                created_at=shapes.iso(END),
                published_at=None,
                author=shapes.user("alice"),
                draft=True,
            )
            releases.append(draft)
        return releases

    def release(self, repo: JSON, tag: str, moment: datetime, *, prerelease: bool) -> JSON:
        stamp = shapes.iso(moment)
        author = shapes.user(self.rng.choice(HUMANS))
        return shapes.release(
            repo, tag, created_at=stamp, published_at=stamp, author=author, prerelease=prerelease
        )

    def add_showcase(self, data: RepoData, showcase: Showcase) -> None:
        number = len(data.pulls) + 1
        created = START + timedelta(days=number, hours=9)
        merged = created + timedelta(hours=20)
        author = HUMANS[number % len(HUMANS)]
        reviewer = HUMANS[(number + 1) % len(HUMANS)]
        pr = self.pull(
            data,
            number,
            showcase.title,
            showcase.body,
            author,
            created,
            state="merged",
            merged_at=merged,
            base=showcase.base,
            size=(12 * number, 3 * number),
        )
        data.reviews[number] = [
            shapes.review(
                pr,
                reviewer=shapes.user(reviewer),
                state="APPROVED",
                submitted_at=shapes.iso(created + timedelta(hours=4)),
            )
        ]
        data.commits[number] = [
            self.commit(data, number, i, message, author, created - timedelta(hours=6 - i))
            for i, message in enumerate(showcase.commits)
        ]

    def add_random(self, data: RepoData, created: datetime, archived: bool) -> None:
        number = len(data.pulls) + 1
        bot = self.rng.random() < 0.12
        author = self.rng.choice(BOT_AUTHORS if bot else HUMANS)
        state = self.state(created, archived)
        merged_at = closed_at = None
        if state != "open":
            closed_at = created + timedelta(minutes=self.rng.randint(30, 60 * 24 * 9))
            closed_at = min(closed_at, END)
            merged_at = closed_at if state == "merged" else None
        base = RELEASE_BRANCH if self.rng.random() < 0.08 else data.repository["default_branch"]
        size = (
            int(self.rng.lognormvariate(3.3, 1.4)) % 4000,
            int(self.rng.lognormvariate(2.5, 1.4)) % 2000,
        )
        pr = self.pull(
            data,
            number,
            self.title(bot, number),
            self.body(bot),
            author,
            created,
            state=state,
            merged_at=merged_at,
            closed_at=closed_at,
            base=base,
            size=size,
            draft=state == "open" and not bot and self.rng.random() < 0.4,
        )
        data.reviews[number] = self.reviews(pr, author, created, closed_at)
        data.commits[number] = self.commits(data, number, author, created, bot)
        stamps = [pr["updated_at"], *(r["submitted_at"] for r in data.reviews[number])]
        pr["updated_at"] = max(stamps)

    def state(self, created: datetime, archived: bool) -> str:
        roll = self.rng.random()
        if archived or END - created > timedelta(days=14):
            return "merged" if roll < 0.78 else "closed" if roll < 0.9 else "open"
        return "merged" if roll < 0.35 else "open"

    def title(self, bot: bool, number: int) -> str:
        if bot:
            return (
                f"Bump lib{self.rng.randint(1, 30)} from 1.{number % 9}.0 to 1.{number % 9 + 1}.0"
            )
        verb = self.rng.choice(("Add", "Fix", "Refactor", "Document", "Speed up", "Remove"))
        noun = self.rng.choice(
            ("retries", "the cache", "pagination", "logging", "the CLI", "tests")
        )
        return f"{verb} {noun}"

    def body(self, bot: bool) -> str | None:
        if bot:
            return "Bumps a dependency.\n\n---\n<details><summary>Release notes</summary></details>"
        roll = self.rng.random()
        if roll < 0.05:
            return None
        text = self.rng.choice(BODIES)
        if roll < 0.4:
            reference = self.rng.choice(REFERENCES).format(n=self.rng.randint(1, 400), org=ORG)
            text = f"{text}\n\n{reference}".strip()
        return text

    def pull(
        self,
        data: RepoData,
        number: int,
        title: str,
        body: str | None,
        author: str,
        created: datetime,
        *,
        state: str,
        size: tuple[int, int],
        base: str,
        merged_at: datetime | None = None,
        closed_at: datetime | None = None,
        draft: bool = False,
    ) -> JSON:
        closed_at = closed_at or merged_at
        last = closed_at or created + timedelta(minutes=self.rng.randint(0, 600))
        additions, deletions = size
        pr = shapes.pull(
            data.repository,
            number,
            title=title,
            author=shapes.user(author, kind="Bot" if author.endswith("[bot]") else "User"),
            body=body,
            created_at=shapes.iso(created),
            updated_at=shapes.iso(min(last, END)),
            state="open" if state == "open" else "closed",
            draft=draft,
            closed_at=_stamp(closed_at),
            merged_at=_stamp(merged_at),
            merged_by=shapes.user(HUMANS[number % len(HUMANS)]),
            base_ref=base,
            additions=additions,
            deletions=deletions,
            changed_files=max(1, (additions + deletions) // 40),
        )
        data.pulls[number] = pr
        return pr

    def reviews(
        self, pr: JSON, author: str, created: datetime, closed: datetime | None
    ) -> list[JSON]:
        """Zero to three reviews: sometimes a bot first, sometimes the author's own comment."""
        end = closed or min(created + timedelta(days=3), END)
        reviewers: list[tuple[str, str]] = []
        if self.rng.random() < 0.15:
            reviewers.append((self.rng.choice(BOT_REVIEWERS), "Bot"))
        if self.rng.random() < 0.1:
            reviewers.append((author, "User"))
        others = [h for h in HUMANS if h != author]
        reviewers += [(login, "User") for login in self.rng.sample(others, self.rng.randint(0, 2))]
        moments = sorted(self.moment(created, end) for _ in reviewers)
        return [
            shapes.review(
                pr,
                reviewer=shapes.user(login, kind=kind),
                submitted_at=shapes.iso(moment),
                state="COMMENTED" if login == author or kind == "Bot" else self.review_state(),
            )
            for (login, kind), moment in zip(reviewers, moments, strict=True)
        ]

    def review_state(self) -> str:
        return self.rng.choice(("APPROVED", "APPROVED", "CHANGES_REQUESTED", "COMMENTED"))

    def commits(
        self, data: RepoData, number: int, author: str, created: datetime, bot: bool
    ) -> list[JSON]:
        """One to six commits, the first up to three days before the PR (10%: after it)."""
        count = 1 if bot else self.rng.randint(1, 6)
        first = created - timedelta(minutes=self.rng.randint(1, 60 * 72))
        if self.rng.random() < 0.1:
            first = created + timedelta(minutes=5)
        messages = ("Initial work", "Address review", "Fix tests", "Fix #{n}", "Tidy up")
        result = []
        for index in range(count):
            moment = first + timedelta(minutes=37 * index)
            message = self.rng.choice(messages).format(n=self.rng.randint(1, 400))
            result.append(self.commit(data, number, index, message, author, moment))
        return result

    def commit(
        self, data: RepoData, number: int, index: int, message: str, author: str, moment: datetime
    ) -> JSON:
        # Some commit e-mails match no GitHub account: the API then says author null.
        known = self.rng.random() > 0.1
        return shapes.commit(
            data.full_name,
            shapes.sha(data.full_name, number, index),
            message=message,
            author_name=author.title(),
            author_email=f"{author}@example.com",
            author_date=shapes.iso(moment),
            committer_date=shapes.iso(moment + timedelta(minutes=1)),
            author=shapes.user(author) if known else None,
        )


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else shapes.iso(moment)


def generate(seed: int = 2024) -> Dataset:
    """The sample dataset for `seed`."""
    return Generator(seed).dataset()


def main(argv: list[str] | None = None) -> None:
    """Write the sample dataset to `--out`."""
    parser = argparse.ArgumentParser(prog="python -m ghpulse.testing.fake_github.generate")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    for path in generate(args.seed).save(args.out):
        print(path)


if __name__ == "__main__":
    main()
