"""Which jobs fan out, their children's jobs and keys, and long default keys."""

from __future__ import annotations

from common.jobs import BackfillLinksSpec, CrawlSpec, RecalculateSpec, default_concurrency_key
from common.jobs.fanout import child_key, child_spec, fans_out, needs_plan, planned
from common.jobs.targets import MAX_TARGET_KEY


def test_several_repositories_or_an_organization_fan_out() -> None:
    assert not fans_out(CrawlSpec(("octo/a",)))
    assert fans_out(CrawlSpec(("octo/a", "octo/b"))) and not needs_plan(CrawlSpec(("a/b", "c/d")))
    assert fans_out(CrawlSpec(organization="octo")) and needs_plan(CrawlSpec(organization="octo"))
    assert fans_out(RecalculateSpec(("octo/a", "octo/b"), steps=("link",)))
    assert not fans_out(BackfillLinksSpec("octo/a"))


def test_a_child_is_the_same_job_for_one_repository() -> None:
    parent = CrawlSpec(("Octo/A", "octo/b"), refresh=True)
    assert child_spec(parent, "Octo/A") == CrawlSpec(("Octo/A",), refresh=True)
    # The key of an on-demand crawl of that repository: one active crawl per repository.
    assert (
        child_key(parent, "Octo/A")
        == "crawl:octo/a"
        == default_concurrency_key(CrawlSpec(("Octo/A",)))
    )
    recalculate = RecalculateSpec(organization="octo", steps=("classify",))
    assert child_spec(recalculate, "octo/c") == RecalculateSpec(("octo/c",), steps=("classify",))


def test_a_plan_output_names_the_repositories() -> None:
    assert planned({"fan_out": ["octo/a"]}) == ["octo/a"]
    assert planned({"prs_updated": 3}) is None and planned(None) is None


def test_a_long_default_key_names_its_targets_by_digest() -> None:
    many = tuple(f"bench-org/repository-{n:03d}" for n in range(40))
    key = default_concurrency_key(CrawlSpec(many))
    assert key.startswith("crawl:40 targets:") and len(key) <= MAX_TARGET_KEY
    assert key == default_concurrency_key(CrawlSpec(tuple(reversed(many))))
