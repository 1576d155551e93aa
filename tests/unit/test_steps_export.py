"""Export files: formats and atomic replacement."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pytest

from crawler_service.data.cycle_times import CycleTimes
from crawler_service.jobs.steps.classify import classification_row
from crawler_service.jobs.steps.export import COLUMNS, write_atomic, write_csv, write_jsonl

RECORD = {
    **dict.fromkeys(COLUMNS),
    "repository": "acme/widgets",
    "number": 1,
    "created_at": datetime(2024, 3, 1, 10, tzinfo=UTC),
    "closing_issues": [{"repository": "acme/widgets", "number": 10, "source": "description"}],
}


def test_csv_and_jsonl_formats():
    out = io.StringIO()
    write_csv([RECORD])(out)
    row = next(csv.DictReader(io.StringIO(out.getvalue())))
    assert (row["created_at"], row["closing_issues"]) == ("2024-03-01T10:00:00Z", "acme/widgets#10")
    out = io.StringIO()
    write_jsonl([RECORD])(out)
    assert json.loads(out.getvalue())["closing_issues"][0]["number"] == 10


def _write_old(file: IO[str]) -> None:
    file.write("old\n")


def test_a_reader_sees_the_old_file_until_the_new_one_is_complete(tmp_path: Path):
    path = tmp_path / "acme" / "widgets.csv"
    write_atomic(path, _write_old, tmp_path / ".staging")
    seen_during_write = []

    def write(file: IO[str]) -> None:
        file.write("new, partial")
        file.flush()
        seen_during_write.append(path.read_text())
        file.write(" and complete\n")

    write_atomic(path, write, tmp_path / ".staging")
    assert seen_during_write == ["old\n"]
    assert path.read_text() == "new, partial and complete\n"


def test_a_failed_export_leaves_the_old_file_and_no_temp_file(tmp_path: Path):
    path = tmp_path / "widgets.jsonl"
    write_atomic(path, _write_old, tmp_path / ".staging")

    def fail(file: IO[str]) -> None:
        file.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, fail, tmp_path / ".staging")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".staging", "widgets.jsonl"]
    assert list((tmp_path / ".staging").iterdir()) == []


def test_classification_row_in_seconds():
    from datetime import timedelta

    row = classification_row(600, 500, CycleTimes(timedelta(hours=1), None, timedelta(0), None))
    assert row == {
        "size_class": "XXL", "coding_seconds": 3600.0, "pickup_seconds": None,
        "review_seconds": 0.0, "deploy_seconds": None,
    }  # fmt: skip
