"""Per-PR closing links: sources, collapsing, repository keys."""

from __future__ import annotations

from crawler_service.data.records import Link
from crawler_service.jobs.steps.link import pull_links


def test_description_and_commit_messages_with_sources():
    links = pull_links("Acme/Widgets", 1, "Fixes #10", ["Fix #12", "closes Acme/Gadgets#3"])
    assert links == [
        Link(1, "acme/widgets", 10, "description"),
        Link(1, "acme/widgets", 12, "commit_message"),
        Link(1, "acme/gadgets", 3, "commit_message"),
    ]


def test_duplicates_collapse_and_the_description_wins():
    links = pull_links("acme/widgets", 1, "closes #10, fixes #10", ["Fix #10", "fixes #10"])
    assert links == [Link(1, "acme/widgets", 10, "description")]


def test_no_references():
    assert pull_links("acme/widgets", 1, "discloses #4 `fixes #5`", []) == []
