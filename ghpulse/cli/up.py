"""`ghpulse up`: the scheduler and a crawler in one process for local use, until Ctrl-C."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ghpulse.cli.local import LocalConfig

DEFAULT_DIR = Path(".ghpulse")
SCHEDULER_METRICS, SCHEDULER_METRICS_DEFAULT = "GHPULSE_SCHEDULER_METRICS_LISTEN", "127.0.0.1:9464"
CRAWLER_METRICS, CRAWLER_METRICS_DEFAULT = "GHPULSE_CRAWLER_METRICS_LISTEN", "127.0.0.1:9465"


def metrics_address(given: str | None, env: str, default: str) -> str:
    """The option if given, else the environment variable — set but empty turns metrics off
    (click's `envvar` would treat an empty value as unset and bind the default port) — else
    `default`."""
    if given is not None:
        return given
    return os.environ.get(env, default)


def up(
    data_dir: Annotated[
        Path, typer.Option("--dir", help="Databases and exports (SQLite files).")
    ] = DEFAULT_DIR,
    scheduler_listen: Annotated[
        str, typer.Option(envvar="GHPULSE_SCHEDULER_LISTEN", help="SchedulerService address.")
    ] = "127.0.0.1:50051",
    crawler_listen: Annotated[
        str, typer.Option(envvar="GHPULSE_CRAWLER_LISTEN", help="PullRequestService address.")
    ] = "127.0.0.1:50052",
    scheduler_metrics: Annotated[
        str | None,
        typer.Option(
            help=f"Scheduler metrics address; '' turns it off (env {SCHEDULER_METRICS}, "
            f"default {SCHEDULER_METRICS_DEFAULT}).",
            show_default=False,
        ),
    ] = None,
    crawler_metrics: Annotated[
        str | None,
        typer.Option(
            help=f"Crawler metrics address; '' turns it off (env {CRAWLER_METRICS}, "
            f"default {CRAWLER_METRICS_DEFAULT}).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the scheduler and a crawler in this process (SQLite under ./.ghpulse/); Ctrl-C stops.

    Other settings come from the environment (GITHUB_TOKEN, GHPULSE_GITHUB_API_URL, ...).
    """
    from common import logging as ghlog
    from ghpulse.cli.local import LocalConfig
    from ghpulse.cli.startup import startup_errors

    ghlog.configure()
    ghlog.register_secret(os.environ.get("GITHUB_TOKEN"))
    ghlog.register_secret(os.environ.get("GHPULSE_TOKEN"))
    config = LocalConfig(
        data_dir=data_dir.resolve(),
        scheduler_listen=scheduler_listen,
        crawler_listen=crawler_listen,
        scheduler_metrics=metrics_address(
            scheduler_metrics, SCHEDULER_METRICS, SCHEDULER_METRICS_DEFAULT
        ),
        crawler_metrics=metrics_address(crawler_metrics, CRAWLER_METRICS, CRAWLER_METRICS_DEFAULT),
    )
    with startup_errors("up"):
        asyncio.run(_serve(config))


async def _serve(config: LocalConfig) -> None:
    import structlog

    from common.lifecycle import wait_for_signal
    from ghpulse.cli.local import local_services

    log = structlog.get_logger("ghpulse.up")
    async with local_services(config) as services:
        log.info(
            "up.ready",
            scheduler=services.scheduler.address,
            crawler=services.crawler.address,
            metrics=services.metrics_urls(),
            data_dir=str(config.data_dir),
        )
        await wait_for_signal()
    log.info("up.stopped")


def register(app: typer.Typer) -> None:
    app.command()(up)
