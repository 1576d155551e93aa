"""The crawler process: data store, GitHub client, job registry, worker and query server."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

import structlog

from common.grpc_server import ServerHost
from common.lifecycle import Lifecycle, wait_for_signal
from common.logging import register_secret
from common.metrics import MetricsServer, serve
from common.proto.ghpulse.v1 import pull_request_service_pb2
from crawler_service.api.backfill import BackfillStarter
from crawler_service.api.pull_requests import PullRequestServicer, add_to_server
from crawler_service.data import migrations
from crawler_service.data.budgets import BudgetStore
from crawler_service.data.queries import Queries
from crawler_service.data.store import CrawlerStore
from crawler_service.github.budget import TokenBudget
from crawler_service.github.client import GitHubClient, GitHubStats
from crawler_service.github.graphql import GraphQLClient, GraphQLStats
from crawler_service.github.tokens import Credential, Credentials
from crawler_service.jobs.pipeline import build_registry
from crawler_service.jobs.registry import JobRegistry
from crawler_service.jobs.steps.export import clean_staging
from crawler_service.metrics import CrawlerMetrics, instrument
from crawler_service.settings import CrawlerSettings
from crawler_service.worker.connection import Worker

log = structlog.get_logger(__name__)
SERVICE_NAMES = (
    pull_request_service_pb2.DESCRIPTOR.services_by_name["PullRequestService"].full_name,
)


def load_plugins(registry: JobRegistry, spec: str) -> None:
    """Call each `module:function` (function default: `register`) in the comma-separated `spec`
    (GHPULSE_CRAWLER_PLUGINS) with the registry, to add jobs or replace built-in ones."""
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        module_name, _, function_name = entry.partition(":")
        function = getattr(importlib.import_module(module_name), function_name or "register")
        function(registry)
        log.info("crawler.plugin_loaded", plugin=entry, jobs=registry.kinds)


class CrawlerApp(Lifecycle):
    """`async with CrawlerApp(settings) as app:` crawls and answers queries until the block ends."""

    def __init__(self, settings: CrawlerSettings) -> None:
        self.settings = settings
        if settings.token is not None:
            register_secret(settings.token.get_secret_value())
        self.store: CrawlerStore | None = None
        #: One per configured token (GITHUB_TOKEN, GITHUB_TOKENS, GITHUB_TOKEN_FILE), or one
        #: without a token; each has a GraphQL client when the crawl fetches through GraphQL.
        self.credentials: Credentials | None = None
        self.worker: Worker | None = None
        self.security = settings.server_security()
        self.backfill = BackfillStarter(settings.scheduler_addr, settings.scheduler_credentials())
        self.host: ServerHost | None = None
        self.metrics_server: MetricsServer | None = None

    @property
    def address(self) -> str:
        assert self.host is not None
        return self.host.address

    @property
    def github(self) -> GitHubClient | None:
        """The first token's REST client."""
        return self.credentials.first.github if self.credentials is not None else None

    def _credentials(self, store: CrawlerStore) -> Credentials:
        tokens: list[str | None] = list(self.settings.github_secrets) or [None]
        return Credentials([self._credential(store, token) for token in tokens])

    def _credential(self, store: CrawlerStore, token: str | None) -> Credential:
        """A token's clients, sharing its budget (and, through the crawler database, the fleet's,
        unless GHPULSE_GITHUB_SHARED_BUDGET is off)."""
        settings = self.settings
        shared = BudgetStore(store.engine) if settings.github_shared_budget else None
        budget = TokenBudget(
            shared=shared,
            sync_interval=settings.github_budget_sync_interval,
            fleet_concurrency=settings.github_fleet_concurrency,
            # A slot outlives the longest request; a crashed crawler's slots free themselves then.
            slot_ttl=settings.github_timeout + 30.0,
        )
        options = self._github_options(budget)
        github = GitHubClient(settings.github_api_url, token, **options)
        if not settings.uses_graphql or token is None:
            return Credential(github)
        return Credential(github, GraphQLClient(settings.github_api_url, token, **options))

    def _github_options(self, budget: TokenBudget) -> dict[str, Any]:
        settings = self.settings
        return {
            "budget": budget,
            "concurrency": settings.github_concurrency,
            "timeout": settings.github_timeout,
            "max_retries": settings.github_max_retries,
            "retry_backoff": settings.github_retry_backoff,
            "secondary_backoff": settings.github_secondary_backoff,
        }

    async def start(self) -> None:
        """Start everything; if a part fails (a busy port, say), stop what had started."""
        # Before anything is opened: a refused configuration exits at once, in one line.
        self.security.check_exposure(self.settings.listen)
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        if settings.migrate:
            await asyncio.to_thread(migrations.upgrade, settings.db)
        self.store = await CrawlerStore.open(
            settings.db, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )
        self.credentials = self._credentials(self.store)
        registry = build_registry(self.store, self.credentials, settings)
        load_plugins(registry, settings.plugins)
        self.metrics_server = await self._serve_metrics(registry)
        leftovers = await asyncio.to_thread(clean_staging, Path(settings.export_dir))
        if leftovers:
            log.info("export.leftovers_removed", files=[str(p) for p in leftovers])
        servicer = PullRequestServicer(Queries(self.store.reader), self.backfill)
        self.host = ServerHost(
            settings.listen,
            SERVICE_NAMES,
            lambda server: add_to_server(servicer, server),
            grace=settings.shutdown_grace,
            security=self.security,
        )
        await self.host.start()
        self.worker = Worker(settings, registry)
        await self.worker.start()
        log.info("crawler.started", address=self.address, worker=settings.worker_id)

    async def _serve_metrics(self, registry: JobRegistry) -> MetricsServer | None:
        """Time `registry`'s steps and serve the metrics on `metrics_listen` (None: off)."""
        listen = self.settings.metrics_listen
        if not listen:
            return None
        metrics = CrawlerMetrics(
            self._github_stats, self._running_attempts, self.settings.slots, self._graphql_stats
        )
        instrument(registry, metrics)
        return await serve(metrics.registry, listen)

    def _github_stats(self) -> GitHubStats | None:
        return self.credentials.rest_stats() if self.credentials is not None else None

    def _graphql_stats(self) -> GraphQLStats | None:
        return self.credentials.graphql_stats() if self.credentials is not None else None

    def _running_attempts(self) -> int:
        return len(self.worker.running()) if self.worker is not None else 0

    async def stop(self) -> None:
        """Health NOT_SERVING; hand back or finish running attempts; drain queries; close."""
        if self.host is not None:
            await self.host.mark_not_serving()
        if self.worker is not None:
            await self.worker.stop()
        if self.host is not None:
            await self.host.stop()
        await self.backfill.aclose()
        if self.credentials is not None:
            await self.credentials.aclose()
        if self.store is not None:
            await self.store.aclose()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        log.info("crawler.stopped")


async def run_forever(settings: CrawlerSettings) -> None:
    async with CrawlerApp(settings):
        await wait_for_signal()
