"""The fake GitHub's data: repositories with their pull requests, reviews, commits and releases.

On disk a dataset is a directory holding one JSON file per repository (`owner__name.json.gz`, or
uncompressed `.json`) and optionally `orgs.json` (`{"org": {"members": ["login", ...]}}`). A
repository file is `{"repository": {...}, "pulls": [detail, ...], "reviews": {"<n>": [...]},
"commits": {"<n>": [...]}, "releases": [...]}` with GitHub's own object shapes. Pull requests are
stored in their detail shape; the list endpoint derives its shape from them.

A `Dataset` is shared with the server's threads, so every read and mutation holds `lock`.
"""

from __future__ import annotations

import copy
import gzip
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ghpulse.testing.fake_github import shapes

JSON = dict[str, Any]
ORGS_FILE = "orgs.json"


@dataclass
class RepoData:
    """One repository and everything the fake serves under it."""

    repository: JSON
    pulls: dict[int, JSON] = field(default_factory=dict)
    reviews: dict[int, list[JSON]] = field(default_factory=dict)
    commits: dict[int, list[JSON]] = field(default_factory=dict)
    releases: list[JSON] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return str(self.repository["full_name"])

    def to_json(self) -> JSON:
        """The on-disk form."""
        return {
            "repository": self.repository,
            "pulls": [self.pulls[n] for n in sorted(self.pulls)],
            "reviews": {str(n): items for n, items in sorted(self.reviews.items())},
            "commits": {str(n): items for n, items in sorted(self.commits.items())},
            "releases": self.releases,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RepoData:
        """Read the on-disk form."""
        return cls(
            repository=data["repository"],
            pulls={int(p["number"]): p for p in data.get("pulls", [])},
            reviews={int(n): list(v) for n, v in data.get("reviews", {}).items()},
            commits={int(n): list(v) for n, v in data.get("commits", {}).items()},
            releases=list(data.get("releases", [])),
        )


class Dataset:
    """Repositories by full name (case-insensitive, like GitHub) and organization members."""

    def __init__(
        self, repos: Iterable[RepoData] = (), members: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.lock = threading.RLock()
        self.repos: dict[str, RepoData] = {r.full_name.lower(): r for r in repos}
        self.members: dict[str, list[str]] = {k: list(v) for k, v in (members or {}).items()}

    # -- files ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Load a dataset directory (or a single repository file)."""
        path = Path(path)
        files = [path] if path.is_file() else sorted(path.glob("*.json*"))
        repos = [RepoData.from_json(_read_json(f)) for f in files if f.name != ORGS_FILE]
        orgs_file = path / ORGS_FILE
        orgs = _read_json(orgs_file) if path.is_dir() and orgs_file.exists() else {}
        return cls(repos, {org: info.get("members", []) for org, info in orgs.items()})

    def save(self, path: str | Path, *, compress: bool = True) -> list[Path]:
        """Write one file per repository (and `orgs.json`); returns the files written."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        written = []
        with self.lock:
            for repo in self.repos.values():
                name = repo.full_name.replace("/", "__") + (".json.gz" if compress else ".json")
                written.append(_write_json(path / name, repo.to_json()))
            if self.members:
                orgs = {org: {"members": m} for org, m in sorted(self.members.items())}
                written.append(_write_json(path / ORGS_FILE, orgs))
        return written

    def copy(self) -> Dataset:
        """A deep copy, for tests that mutate a shared dataset."""
        with self.lock:
            return Dataset(copy.deepcopy(list(self.repos.values())), self.members)

    # -- reads ----------------------------------------------------------------------------------

    def repo(self, full_name: str) -> RepoData | None:
        """A repository by `owner/name` (case-insensitive)."""
        return self.repos.get(full_name.lower())

    def org_repositories(self, org: str) -> list[JSON]:
        """The repositories owned by `org`, by name."""
        with self.lock:
            owned = [
                r.repository
                for r in self.repos.values()
                if r.repository["owner"]["login"].lower() == org.lower()
            ]
        return sorted(owned, key=lambda r: str(r["name"]).lower())

    def has_owner(self, login: str) -> bool:
        """Whether `login` owns a repository or is a known organization."""
        return login in self.members or bool(self.org_repositories(login))

    # -- mutations ------------------------------------------------------------------------------

    def touch_pull(self, repo: str, number: int, **changes: Any) -> JSON:
        """Edit a pull request and bump its `updated_at` past every other PR of the repository.

        `merged_at` in `changes` also sets `merged`; returns the new detail object.
        """
        with self.lock:
            data = self.require(repo)
            pr = data.pulls[number]
            pr.update(changes)
            if "merged_at" in changes:
                pr["merged"] = changes["merged_at"] is not None
            pr["updated_at"] = changes.get("updated_at") or self._next_updated_at(data)
            return pr

    def add_pull(
        self,
        repo: str,
        *,
        title: str = "A new pull request",
        author: str = "octocat",
        body: str | None = "",
        number: int | None = None,
        reviews: Sequence[JSON] = (),
        commits: Sequence[JSON] = (),
        **fields: Any,
    ) -> JSON:
        """Add a pull request (detail shape, see `shapes.pull` for `fields`); returns it.

        Its `created_at` and `updated_at` default to just after the repository's newest update.
        """
        with self.lock:
            data = self.require(repo)
            number = number or max(data.pulls, default=0) + 1
            fields.setdefault("created_at", self._next_updated_at(data))
            pr = shapes.pull(
                data.repository,
                number,
                title=title,
                author=shapes.user(author),
                body=body,
                **fields,
            )
            data.pulls[number] = pr
            data.reviews[number] = list(reviews)
            data.commits[number] = list(commits)
            return pr

    def add_repository(self, repo: JSON) -> RepoData:
        """Add (or replace) a repository object with no pull requests."""
        with self.lock:
            data = RepoData(repo)
            self.repos[data.full_name.lower()] = data
            return data

    def require(self, repo: str) -> RepoData:
        """A repository by `owner/name`; KeyError when the dataset has none."""
        data = self.repo(repo)
        if data is None:
            raise KeyError(f"no repository {repo!r} in the dataset")
        return data

    @staticmethod
    def _next_updated_at(data: RepoData) -> str:
        # Strictly after every stored update, and not in the past, so sort=updated puts it first.
        stamps = [shapes.parse_iso(p["updated_at"]) for p in data.pulls.values()]
        latest = max(stamps, default=datetime.min.replace(tzinfo=UTC)) + timedelta(seconds=1)
        return shapes.iso(max(latest, datetime.now(UTC).replace(microsecond=0)))


def _read_json(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as stream:
        return json.load(stream)


def _write_json(path: Path, data: Any) -> Path:
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if path.suffix == ".gz":
        # mtime=0 keeps the bytes deterministic, so regenerating the sample gives no diff.
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text + "\n", encoding="utf-8")
    return path
