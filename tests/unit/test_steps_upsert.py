"""Raw GitHub items -> typed rows, including real GitHub's nulls."""

from __future__ import annotations

from datetime import UTC, datetime

from crawler_service.jobs.steps import dedupe, parse_time
from crawler_service.jobs.steps.upsert import commit_rows, pull_row, release_row, review_rows


def test_parse_time_is_aware_utc():
    assert parse_time("2024-03-01T10:00:00Z") == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert parse_time(None) is None


def test_dedupe_is_case_insensitive_and_keeps_the_first_spelling():
    assert dedupe(["Acme/Widgets", "acme/widgets", "acme/gadgets"]) == [
        "Acme/Widgets",
        "acme/gadgets",
    ]


def test_pull_row_copes_with_a_deleted_author_and_null_body():
    data = {
        "number": 4, "title": None, "user": None, "body": None, "state": "closed",
        "merged_at": None, "created_at": "2024-03-07T00:00:00Z",
        "updated_at": "2024-03-07T00:00:00Z", "base": {"ref": "main"},
    }  # fmt: skip
    row = pull_row("acme/widgets", data)
    assert (row["author"], row["body"], row["title"], row["state"]) == ("", "", "", "closed")
    assert row["additions"] == 0


def test_merged_state_and_bot_authors():
    data = {
        "number": 1, "state": "closed", "merged_at": "2024-03-02T10:00:00Z",
        "created_at": "2024-03-01T10:00:00Z", "updated_at": "2024-03-02T10:00:00Z",
        "user": {"login": "renovate[bot]", "type": "Bot"}, "draft": True,
    }  # fmt: skip
    row = pull_row("acme/widgets", data)
    assert (row["state"], row["author_is_bot"], row["draft"]) == ("merged", True, True)


def test_reviews_and_commits_listed_twice_are_kept_once():
    review = {"id": 7, "user": {"login": "bob"}, "state": "APPROVED", "submitted_at": None}
    assert len(review_rows("r", 1, [review, review])) == 1
    commit = {"sha": "abc", "commit": {"message": "m", "author": None}, "author": None}
    rows = commit_rows("r", 1, [commit, commit])
    assert [(r["sha"], r["authored_at"], r["author_login"]) for r in rows] == [("abc", None, "")]


def test_draft_releases_are_not_releases():
    assert release_row("r", {"id": 1, "draft": True, "published_at": None}) is None
    row = release_row("r", {"id": 2, "tag_name": "v1", "published_at": "2024-03-03T10:00:00Z"})
    assert row is not None and row["tag_name"] == "v1"
