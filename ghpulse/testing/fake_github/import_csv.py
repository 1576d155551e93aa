"""Convert recorded GitHub API items (CSV rows, Apache DevLake's raw-table format) to a dataset.

`python -m ghpulse.testing.fake_github.import_csv SRC_DIR --out DIR` reads
`_raw_github_api_pull_requests.csv`, `_raw_github_api_pull_request_reviews.csv` and
`_raw_github_api_pull_request_commits.csv` (columns `id, params, data, url, input, created_at`;
`data` is one raw item, `input` names the PR as `{"Number": n}`) and writes one repository file.
LICENSE and NOTICE files beside the CSVs are copied along.

The recording holds list-shaped pull requests: their detail fields `additions`, `deletions`,
`changed_files` and `commits` are unknown and stay absent, and `merged` is derived from
`merged_at`. Rows repeated in the recording collapse (the last one wins).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ghpulse.testing.fake_github.dataset import Dataset, RepoData

JSON = dict[str, Any]
PULLS = "_raw_github_api_pull_requests.csv"
REVIEWS = "_raw_github_api_pull_request_reviews.csv"
COMMITS = "_raw_github_api_pull_request_commits.csv"
KEPT_FILES = ("LICENSE", "NOTICE")


def _rows(path: Path) -> Iterator[tuple[JSON, JSON]]:
    """(item, input) per row, in the recording's order."""
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as stream:
        rows = sorted(csv.DictReader(stream), key=lambda row: int(row["id"]))
    for row in rows:
        yield json.loads(row["data"]), json.loads(row["input"] or "null") or {}


def _by_pull(path: Path, key: str) -> dict[int, list[JSON]]:
    grouped: dict[int, dict[object, JSON]] = {}
    if not path.exists():
        return {}
    for item, source in _rows(path):
        grouped.setdefault(int(source["Number"]), {})[item[key]] = item
    return {number: list(items.values()) for number, items in grouped.items()}


def convert(source: Path) -> Dataset:
    """The dataset of the one repository recorded in `source`."""
    pulls: dict[int, JSON] = {}
    for item, _ in _rows(source / PULLS):
        pulls[int(item["number"])] = {**item, "merged": item.get("merged_at") is not None}
    if not pulls:
        raise ValueError(f"no pull requests in {source / PULLS}")
    newest = max(pulls.values(), key=lambda p: str(p["updated_at"]))
    repo = RepoData(
        repository=newest["base"]["repo"],
        pulls=pulls,
        reviews=_by_pull(source / REVIEWS, "id"),
        commits=_by_pull(source / COMMITS, "sha"),
    )
    return Dataset([repo])


def main(argv: list[str] | None = None) -> None:
    """Convert SRC_DIR into `--out`, with its LICENSE and NOTICE."""
    parser = argparse.ArgumentParser(prog="python -m ghpulse.testing.fake_github.import_csv")
    parser.add_argument("source", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    written = convert(args.source).save(args.out)
    for name in KEPT_FILES:
        if (args.source / name).exists():
            written.append(Path(shutil.copyfile(args.source / name, args.out / name)))
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
