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
        str, typer.Option(envvar="GHPULSE_SCHEDULER_METRICS_LISTEN", help="'' turns it off.")
    ] = "127.0.0.1:9464",
    crawler_metrics: Annotated[
        str, typer.Option(envvar="GHPULSE_CRAWLER_METRICS_LISTEN", help="'' turns it off.")
    ] = "127.0.0.1:9465",
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
        scheduler_metrics=scheduler_metrics,
        crawler_metrics=crawler_metrics,
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
