"""The crawler's jobs: `crawl`, `recalculate` and `backfill_links`, built from the steps.

- crawl: fetch -> upsert -> link -> classify -> export.
- recalculate: the named steps among upsert, link, classify, export, from stored raw data (no
  GitHub request; `Job.steps_for` keeps only the steps the spec names).
- backfill_links: the link step for one repository.

A crawl or recalculate naming an organization is a fan-out parent (`common.jobs.fanout`): a
crawler's attempt of it runs only the `plan` step (`Job.attempt_steps`), and each repository is
then crawled by a child run of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from common.jobs import JobKind, JobSpec
from crawler_service.data.store import CrawlerStore
from crawler_service.github.tokens import Credentials
from crawler_service.jobs.registry import Job, JobRegistry, Output
from crawler_service.jobs.steps.classify import ClassifyStep
from crawler_service.jobs.steps.export import ExportStep
from crawler_service.jobs.steps.fetch import FetchStep
from crawler_service.jobs.steps.link import LinkStep
from crawler_service.jobs.steps.plan import PlanStep
from crawler_service.jobs.steps.upsert import UpsertStep
from crawler_service.settings import CrawlerSettings


def summarize_crawl(_spec: JobSpec, outputs: Mapping[str, Output]) -> Output:
    """The run output of a crawl: what was fetched, what it cost, what failed, what was exported."""
    fetch = outputs.get("fetch", {})
    return {
        "repositories_fetched": list(fetch.get("repositories", [])),
        "prs_updated": fetch.get("prs_updated", 0),
        "requests": fetch.get("requests", 0),
        "not_modified": fetch.get("not_modified", 0),
        "graphql_queries": fetch.get("graphql_queries", 0),
        "graphql_points": fetch.get("graphql_points", 0),
        "github_owners": dict(fetch.get("github_owners", {})),
        "failed_repositories": list(fetch.get("failed_repositories", [])),
        "skipped_pull_requests": list(fetch.get("skipped_pull_requests", [])),
        "links": outputs.get("link", {}).get("links", 0),
        "exports": list(outputs.get("export", {}).get("exports", [])),
    }


def summarize_recalculate(_spec: JobSpec, outputs: Mapping[str, Output]) -> Output:
    """The run output of a recalculation: each step's output, by step name."""
    return {name: dict(output) for name, output in outputs.items()}


def build_registry(
    store: CrawlerStore,
    credentials: Credentials,
    settings: CrawlerSettings,
    *,
    fetch: FetchStep | None = None,
) -> JobRegistry:
    """A registry with the crawl, recalculate and backfill_links jobs. The crawl fetches with the
    configured tokens' clients (through GraphQL as `settings.github_api` says, for the tokens
    with a GraphQL client); `fetch` overrides the fetch step's tuning, e.g. in tests."""
    fetch = fetch or FetchStep(
        store,
        credentials.first.github,
        concurrency=max(2 * settings.github_concurrency, 1),
        graphql=credentials.first.graphql,
        api=settings.github_api,
        busy_retry=settings.fetch_busy_retry,
        credentials=credentials,
    )
    upsert, link = UpsertStep(store), LinkStep(store)
    classify, export = ClassifyStep(store), ExportStep(store, Path(settings.export_dir))
    registry = JobRegistry()
    plan = PlanStep(store, credentials.first.github)
    registry.register(
        Job(JobKind.CRAWL, [fetch, upsert, link, classify, export], summarize_crawl, plan)
    )
    registry.register(
        Job(JobKind.RECALCULATE, [upsert, link, classify, export], summarize_recalculate, plan)
    )
    registry.register(Job(JobKind.BACKFILL_LINKS, [link]))
    return registry
