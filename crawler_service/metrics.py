"""The crawler's Prometheus metrics (names prefixed `ghpulse_`).

GitHub figures are read from the clients' own counters (`GitHubClient.stats` for REST requests,
`GraphQLClient.stats` for GraphQL queries and the points they cost) at each scrape, so the clients
need no hook. Steps are timed by wrapping the registry's steps (`instrument`), which
also covers steps of plugin jobs. `CrawlerApp` wires and serves them: this module knows no app.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crawler_service.errors import AttemptStopped
from crawler_service.github.client import GitHubStats
from crawler_service.github.graphql import GraphQLStats
from crawler_service.jobs.registry import JobRegistry, Output, Step, StepContext

STEP_BUCKETS = (0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))


class _Live(Collector):
    """Figures read at scrape time: the GitHub clients' counters and the worker's attempts."""

    def __init__(
        self,
        stats: Callable[[], GitHubStats | None],
        running: Callable[[], int],
        slots: int,
        graphql: Callable[[], GraphQLStats | None],
    ) -> None:
        self._stats = stats
        self._running = running
        self._slots = slots
        self._graphql = graphql

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ghpulse_crawler_attempts_running",
            "Attempts executing on this crawler.",
            value=self._running(),
        )
        yield GaugeMetricFamily(
            "ghpulse_crawler_slots", "Attempts this crawler runs at once.", value=self._slots
        )
        stats = self._stats()
        if stats is not None:
            yield from _github(stats)
        yield from _graphql(self._graphql())


def _github(stats: GitHubStats) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "ghpulse_github_requests",
        "GitHub answers by HTTP status (retries included).",
        labels=["status"],
    )
    for status, count in sorted(stats.by_status.items()):
        requests.add_metric([str(status)], count)
    yield requests
    yield CounterMetricFamily(
        "ghpulse_github_not_modified",
        "GitHub 304 answers (conditional requests that cost no rate budget).",
        value=stats.not_modified,
    )
    answered = sum(stats.by_status.values())
    yield GaugeMetricFamily(
        "ghpulse_github_not_modified_ratio",
        "Share of GitHub answers that were 304 since start.",
        value=stats.not_modified / answered if answered else 0.0,
    )
    if stats.rate_limit_remaining is not None:
        yield GaugeMetricFamily(
            "ghpulse_github_rate_limit_remaining",
            "x-ratelimit-remaining of the last answer.",
            value=stats.rate_limit_remaining,
        )


def _graphql(stats: GraphQLStats | None) -> Iterator[Metric]:
    """GraphQL figures: zero without a GraphQL client, so dashboards see REST and GraphQL side by
    side whatever the configuration."""
    stats = stats or GraphQLStats()
    queries = CounterMetricFamily(
        "ghpulse_github_graphql_queries",
        "GitHub GraphQL answers by HTTP status (retries included).",
        labels=["status"],
    )
    for status, count in sorted(stats.by_status.items()):
        queries.add_metric([str(status)], count)
    yield queries
    yield CounterMetricFamily(
        "ghpulse_github_graphql_points",
        "Points of the GraphQL rate budget spent (rateLimit.cost of complete answers).",
        value=stats.points,
    )
    if stats.rate_limit_remaining is not None:
        yield GaugeMetricFamily(
            "ghpulse_github_graphql_rate_limit_remaining",
            "Points of the GraphQL budget left after the last answer.",
            value=stats.rate_limit_remaining,
        )


class CrawlerMetrics:
    """The crawler's metrics in their own registry; see the module docstring."""

    def __init__(
        self,
        stats: Callable[[], GitHubStats | None],
        running: Callable[[], int],
        slots: int,
        graphql: Callable[[], GraphQLStats | None] = lambda: None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Live(stats, running, slots, graphql))
        self.steps = Counter(
            "ghpulse_crawler_steps",
            "Steps run by this crawler, by job, step and outcome (succeeded, failed, stopped).",
            ["job", "step", "outcome"],
            registry=self.registry,
        )
        self.step_duration = Histogram(
            "ghpulse_crawler_step_duration_seconds",
            "Step run time on this crawler, by job, step and outcome.",
            ["job", "step", "outcome"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )

    def step_ran(self, job: str, step: str, outcome: str, seconds: float) -> None:
        self.steps.labels(job, step, outcome).inc()
        self.step_duration.labels(job, step, outcome).observe(seconds)


class TimedStep:
    """A step that reports its outcome and duration to `metrics`, then behaves as `inner`."""

    def __init__(self, inner: Step, job: str, metrics: CrawlerMetrics) -> None:
        self.inner = inner
        self.name = inner.name
        self.job = job
        self.metrics = metrics

    async def run(self, ctx: StepContext) -> Output:
        started = time.monotonic()
        outcome = "failed"
        try:
            output = await self.inner.run(ctx)
            outcome = "succeeded"
            return output
        except AttemptStopped:
            outcome = "stopped"
            raise
        finally:
            self.metrics.step_ran(self.job, self.name, outcome, time.monotonic() - started)


def instrument(registry: JobRegistry, metrics: CrawlerMetrics) -> None:
    """Replace every registered job's steps by `TimedStep`s."""
    for kind in registry.kinds:
        job = registry.get(kind)
        steps = [TimedStep(step, kind, metrics) for step in job.steps]
        registry.register(replace(job, steps=steps))
