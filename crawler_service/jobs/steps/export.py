"""The `export` step: per repository, every PR with its metrics and closing links, as CSV and JSON
Lines under the export directory (`<dir>/<owner>/<name>.csv` and `.jsonl`).

Each file is written to a temporary file in the hidden staging directory `<dir>/.staging/` (same
file system) and renamed over the old one, so a reader sees the old file or the new one, never a
partial one, and a failed export leaves the old file intact. Temporary files never sit beside the
exports; those of a crawler killed mid-export are removed when a crawler starts
(`clean_staging`).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import socket
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from crawler_service.data.models import ClosingLink, PullRequest
from crawler_service.data.store import CrawlerStore
from crawler_service.errors import PermanentError
from crawler_service.jobs.registry import Output, StepContext
from crawler_service.jobs.steps import each_repository

COLUMNS = (
    "repository", "number", "title", "state", "author", "author_is_bot", "draft", "base_ref",
    "created_at", "updated_at", "closed_at", "merged_at", "additions", "deletions",
    "changed_files", "size_class", "coding_seconds", "pickup_seconds", "review_seconds",
    "deploy_seconds", "url",
)  # fmt: skip


def _json_value(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


#: The export directory's hidden subdirectory holding files being written (never an owner: GitHub
#: logins cannot start with a dot).
STAGING = ".staging"
#: Staged files of other hosts older than this are leftovers too (their writer cannot be asked).
STALE_AFTER = 24 * 3600.0


def _writer_prefix() -> str:
    return f"{socket.gethostname()}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftover(entry: Path, host: str, now: float) -> bool:
    """Whether staged `entry` (`<host>.<pid>.<random>.tmp`) lost its writer: a dead process of
    this host, or (another host's) older than STALE_AFTER."""
    writer_host, _, rest = entry.name.partition(".")
    pid = rest.partition(".")[0]
    if writer_host == host and pid.isdigit():
        return int(pid) == os.getpid() or not _alive(int(pid))
    return now - entry.stat().st_mtime > STALE_AFTER


def clean_staging(export_dir: Path) -> list[Path]:
    """Remove the temporary files that crawlers killed mid-export left in `export_dir`'s staging
    directory; returns them. Files of live crawlers sharing the directory stay."""
    staging = export_dir / STAGING
    if not staging.is_dir():
        return []
    host, now, removed = socket.gethostname(), time.time(), []
    for entry in staging.iterdir():
        if entry.is_file() and _leftover(entry, host, now):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def write_atomic(path: Path, write: Callable[[IO[str]], None], staging: Path) -> None:
    """Write `path` through `write(file)` atomically: a temp file in `staging` (a directory on
    the same file system, e.g. `<export dir>/.staging`) renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=_writer_prefix(), suffix=".tmp", dir=staging)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_csv(records: Sequence[dict[str, Any]]) -> Callable[[IO[str]], None]:
    """A writer of `records` as CSV; closing issues as space-separated `owner/name#N`."""

    def write(file: IO[str]) -> None:
        writer = csv.DictWriter(file, [*COLUMNS, "closing_issues"])
        writer.writeheader()
        for record in records:
            issues = " ".join(f"{i['repository']}#{i['number']}" for i in record["closing_issues"])
            row = {key: _json_value(record[key]) for key in COLUMNS}
            writer.writerow({**row, "closing_issues": issues})

    return write


def write_jsonl(records: Sequence[dict[str, Any]]) -> Callable[[IO[str]], None]:
    """A writer of `records` as JSON Lines (timestamps ISO 8601 UTC)."""

    def write(file: IO[str]) -> None:
        for record in records:
            file.write(json.dumps({k: _json_value(v) for k, v in record.items()}) + "\n")

    return write


@dataclass
class ExportStep:
    """See the module docstring."""

    store: CrawlerStore
    export_dir: Path
    name: str = "export"

    async def run(self, ctx: StepContext) -> Output:
        per_repository = await each_repository(ctx, self.store, self._repository, "exported")
        return {"exports": [path for paths in per_repository for path in paths]}

    async def _repository(self, key: str) -> list[str]:
        records = await self._records(key)
        # Not `with_suffix`: it would cut `next.js` to `next`, and two repositories share a file.
        csv_path, jsonl_path = self._inside(f"{key}.csv"), self._inside(f"{key}.jsonl")
        # File I/O off the event loop: other runs and the query API share it.
        staging = self.export_dir.resolve() / STAGING
        await asyncio.to_thread(write_atomic, csv_path, write_csv(records), staging)
        await asyncio.to_thread(write_atomic, jsonl_path, write_jsonl(records), staging)
        return [str(csv_path), str(jsonl_path)]

    def _inside(self, relative: str) -> Path:
        """`export_dir / relative`, refused (PermanentError) unless it stays inside export_dir:
        whatever a repository is called, an export never lands elsewhere."""
        root = self.export_dir.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or path == root:
            raise PermanentError(
                f"export path of {relative[:100]!r} would leave the export directory",
                code="EXPORT_PATH_OUTSIDE",
            )
        return path

    async def _records(self, key: str) -> list[dict[str, Any]]:
        columns = [getattr(PullRequest, name) for name in COLUMNS]
        pulls = await self.store.select(
            sa.select(*columns).where(PullRequest.repository == key).order_by(PullRequest.number)
        )
        links = await self.store.select(
            sa.select(
                ClosingLink.pr_number,
                ClosingLink.issue_repository,
                ClosingLink.issue_number,
                ClosingLink.source,
            )
            .where(ClosingLink.repository == key)
            .order_by(ClosingLink.pr_number, ClosingLink.issue_repository, ClosingLink.issue_number)
        )
        by_pr: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for number, repository, issue, source in links:
            by_pr[number].append({"repository": repository, "number": issue, "source": source})
        return [
            {**dict(zip(COLUMNS, row, strict=True)), "closing_issues": by_pr.get(row[1], [])}
            for row in pulls
        ]
