"""`ghpulse demo`: a complete, offline tour in a few seconds.

It serves the bundled sample dataset (organization `ghpulse-demo`) from the fake GitHub, starts the
scheduler and a crawler on free ports with their databases in a temporary directory (or `--dir`),
crawls the organization (all but its archived repository) with a progress bar per step, then
prints what the crawl cost on GitHub (REST requests, GraphQL queries and points) and each
repository's PR counts, size classes and cycle-time percentiles
(PullRequestService.GetRepositoryStats). The crawler gets a dummy token, which the fake GitHub
requires, so the crawl takes the GraphQL path a real token takes (never the user's GITHUB_TOKEN).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ghpulse.cli.output import EXIT_ERROR, OutputFormat, console, fail, run

SAMPLE_ORG = "ghpulse-demo"
#: The fake GitHub's token: a real one (GITHUB_TOKEN) must never reach it.
DEMO_TOKEN = "ghpulse-demo-token"
#: Whatever the environment says about tokens and TLS, the demo runs on loopback, plaintext and
#: without authentication: it works with zero setup.
_OPEN = (("auth_file", ""), ("tls_cert", ""), ("tls_key", ""), ("tls_client_ca", ""))
_PLAIN_CLIENT = (
    ("token", None),
    ("token_file", ""),
    ("tls", False),
    ("tls_ca", ""),
    ("tls_client_cert", ""),
    ("tls_client_key", ""),
)
#: Quick shutdowns: nothing is left running when the demo stops the services.
_SCHEDULER_EXTRA = (("shutdown_grace", 1.0), ("sweep_interval", 0.5), ("migrate", True), *_OPEN)
_CRAWLER_EXTRA = (
    ("shutdown_grace", 1.0),
    ("github_token", DEMO_TOKEN),
    ("plugins", ""),
    *_OPEN,
    *_PLAIN_CLIENT,
)


def demo(
    data_dir: Annotated[
        Path | None,
        typer.Option("--dir", help="Keep the databases and exports here (default: a temp dir)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show service logs.")] = False,
) -> None:
    """Crawl the bundled sample offline and show per-repository PR statistics (exit 0: done)."""
    from common import logging as ghlog

    # Expected warnings (the sample's archived repository) would interleave with the bars.
    from ghpulse.cli.startup import startup_errors

    ghlog.configure(level="info" if verbose else "error")
    with startup_errors("demo"):
        if data_dir is not None:
            code = run(_demo(data_dir.resolve()))
        else:
            with tempfile.TemporaryDirectory(prefix="ghpulse-demo-") as tmp:
                code = run(_demo(Path(tmp)))
    if code:
        raise typer.Exit(code)


async def _demo(data_dir: Path) -> int:
    from ghpulse.cli.local import LocalConfig, local_services
    from ghpulse.testing.fake_github import SAMPLE_DIR, FakeGitHub

    out = console()
    with FakeGitHub(SAMPLE_DIR, token=DEMO_TOKEN) as github:
        repositories = [
            str(repo["full_name"])
            for repo in github.dataset.org_repositories(SAMPLE_ORG)
            if not repo.get("archived")
        ]
        if not repositories:
            fail(f"error: demo: no sample data in {SAMPLE_DIR}; the installation is incomplete")
        config = LocalConfig(
            data_dir=data_dir,
            scheduler_listen="127.0.0.1:0",
            crawler_listen="127.0.0.1:0",
            scheduler_metrics="127.0.0.1:0",
            crawler_metrics="127.0.0.1:0",
            github_api_url=github.url,
            scheduler_extra=_SCHEDULER_EXTRA,
            crawler_extra=_CRAWLER_EXTRA,
        )
        async with local_services(config) as services:
            _print_setup(out, github.url, services, data_dir)
            return await _crawl_and_report(
                out, services.scheduler.address, services.crawler.address, repositories
            )


def _print_setup(console: Console, github_url: str, services: object, data_dir: Path) -> None:
    from ghpulse.cli.local import LocalServices

    assert isinstance(services, LocalServices)
    console.print(f"[bold]ghpulse demo[/] — sample organization [cyan]{SAMPLE_ORG}[/], offline")
    console.print(f"  fake GitHub   {github_url}")
    console.print(f"  scheduler     {services.scheduler.address}  (gRPC)")
    console.print(f"  crawler       {services.crawler.address}  (gRPC)")
    for url in services.metrics_urls():
        console.print(f"  metrics       {url}")
    console.print(f"  data          {data_dir}")


async def _crawl_and_report(
    console: Console, scheduler: str, crawler: str, repositories: list[str]
) -> int:
    from google.protobuf.json_format import MessageToDict

    from common.auth.credentials import ClientCredentials
    from common.client.aio import GhpulseClient
    from common.jobs import CrawlSpec
    from ghpulse.cli.progress import describe_end, exit_code, watch_run
    from ghpulse.cli.tables import stats_table

    async with GhpulseClient(scheduler, crawler, credentials=ClientCredentials()) as client:
        job = CrawlSpec(organization=SAMPLE_ORG)
        triggered = await client.trigger(job, labels={"source": "demo"})
        console.print(f"\nCrawling organization {SAMPLE_ORG}: run {triggered.run_id}")
        view = await watch_run(client, triggered.run_id, console, OutputFormat.TABLE)
        console.print(describe_end(view))
        if exit_code(view.state):
            return exit_code(view.state) or EXIT_ERROR
        run = await client.get_run(triggered.run_id)
        console.print(github_cost(MessageToDict(run.output)))
        stats = await asyncio.gather(*(client.repository_stats(r) for r in repositories))
    console.print()
    console.print(stats_table(stats))
    console.print(
        "\nNext: [bold]ghpulse up[/] runs both services locally; set GITHUB_TOKEN to crawl "
        "real repositories with [bold]ghpulse trigger crawl owner/repo --watch[/]."
    )
    return 0


def github_cost(output: dict[str, object]) -> str:
    """One line: what a crawl run's output says it cost on GitHub."""

    def count(key: str) -> int:
        value = output.get(key, 0)
        return int(value) if isinstance(value, int | float) else 0

    return (
        f"GitHub: {count('requests')} REST requests ({count('not_modified')} answered 304, free), "
        f"{count('graphql_queries')} GraphQL queries ({count('graphql_points')} points)"
    )


def register(app: typer.Typer) -> None:
    app.command()(demo)
