"""Crawl steps run on their own against a real store: every rate-limit wait of the fetch step shows
as the step's progress message; export file names keep the whole repository name (dots
included)."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from common.jobs import CrawlSpec, RecalculateSpec
from crawler_service.data.store import CrawlerStore
from crawler_service.github.client import GitHubClient
from crawler_service.jobs.registry import StepContext
from crawler_service.jobs.steps.export import ExportStep
from crawler_service.jobs.steps.fetch import FetchStep
from tests.support.github import TOKEN, FakeClock

API = "ghpulse-demo/api"


async def _crawl_with_progress(
    tmp_path: Path, fake: object, clock: FakeClock, spec: CrawlSpec
) -> list[str]:
    messages: list[str] = []

    async def sink(step: str, current: int, total: int, message: str) -> None:
        messages.append(message)

    ctx = StepContext("run-1", 1, spec, "fetch", MappingProxyType({}), sink)
    url = fake.url  # type: ignore[attr-defined]
    async with (
        await CrawlerStore.open(f"sqlite:///{tmp_path}/c.db", migrate=True) as store,
        GitHubClient(url, TOKEN, sleep=clock.sleep, clock=clock) as github,
    ):
        await FetchStep(store, github).run(ctx)
    return messages


async def test_a_rate_limit_wait_while_listing_releases_is_reported(
    tmp_path: Path, fake_github: object, fake_clock: FakeClock
) -> None:
    fake_github.faults.exhaust_primary(r"/releases", reset_in=42)  # type: ignore[attr-defined]
    messages = await _crawl_with_progress(
        tmp_path, fake_github, fake_clock, CrawlSpec(repositories=(API,))
    )
    assert "rate limited; waiting 43s for reset" in messages


async def test_a_rate_limit_wait_while_listing_the_organization_is_reported(
    tmp_path: Path, fake_github: object, fake_clock: FakeClock
) -> None:
    fake_github.faults.exhaust_primary(r"/orgs/", reset_in=42)  # type: ignore[attr-defined]
    messages = await _crawl_with_progress(
        tmp_path, fake_github, fake_clock, CrawlSpec(organization="ghpulse-demo")
    )
    assert "rate limited; waiting 43s for reset" in messages


async def _ignore(step: str, current: int, total: int, message: str) -> None:
    return None


async def test_repositories_whose_names_differ_after_a_dot_get_their_own_files(
    tmp_path: Path,
) -> None:
    names = ("octo/next.js", "octo/next.py", "octo/next")
    spec = RecalculateSpec(repositories=names, steps=("export",))
    ctx = StepContext("run-1", 1, spec, "export", MappingProxyType({}), _ignore)
    exports = tmp_path / "exports"
    async with await CrawlerStore.open(f"sqlite:///{tmp_path}/c.db", migrate=True) as store:
        output = await ExportStep(store, exports).run(ctx)
    expected = [str(exports / f"{name}.{ext}") for name in names for ext in ("csv", "jsonl")]
    assert output["exports"] == expected
    assert sorted(
        p.relative_to(exports).as_posix()
        for p in exports.rglob("*.*")
        if not p.relative_to(exports).as_posix().startswith(".")
    ) == sorted(f"{name}.{ext}" for name in names for ext in ("csv", "jsonl"))
