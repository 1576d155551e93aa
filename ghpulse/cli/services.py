"""`ghpulse scheduler`, `ghpulse crawler`, `ghpulse migrate`: start the services, apply migrations.

Every flag has an environment variable (see README); a flag given wins over the variable.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated, Any

import typer

from common import logging as ghlog
from ghpulse.cli.startup import safe_url, startup_errors


def _given(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="GHPULSE_INSECURE: allow a non-loopback listen address without authentication.",
    ),
]


class MigrateTarget(StrEnum):
    ALL = "all"
    SCHEDULER = "scheduler"
    CRAWLER = "crawler"


def scheduler(
    listen: Annotated[str | None, typer.Option(help="GHPULSE_SCHEDULER_LISTEN")] = None,
    db: Annotated[str | None, typer.Option(help="GHPULSE_SCHEDULER_DB (SQLAlchemy URL)")] = None,
    lease_ttl: Annotated[float | None, typer.Option(help="GHPULSE_LEASE_TTL (s)")] = None,
    heartbeat_interval: Annotated[
        float | None, typer.Option(help="GHPULSE_HEARTBEAT_INTERVAL (s)")
    ] = None,
    sweep_interval: Annotated[float | None, typer.Option(help="GHPULSE_SWEEP_INTERVAL (s)")] = None,
    metrics_listen: Annotated[
        str | None, typer.Option(help="GHPULSE_SCHEDULER_METRICS_LISTEN")
    ] = None,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not apply migrations")
    ] = False,
    insecure: InsecureOpt = False,
) -> None:
    """Start the scheduler (SchedulerService, WorkerService)."""
    from scheduler_service.app import run_forever
    from scheduler_service.settings import SchedulerSettings

    ghlog.configure()
    overrides = _given(
        listen=listen,
        db=db,
        lease_ttl=lease_ttl,
        heartbeat_interval=heartbeat_interval,
        sweep_interval=sweep_interval,
        metrics_listen=metrics_listen,
    )
    if no_migrate:
        overrides["migrate"] = False
    if insecure:
        overrides["insecure"] = True
    with startup_errors("scheduler"):
        asyncio.run(run_forever(SchedulerSettings(**overrides)))


def crawler(
    listen: Annotated[str | None, typer.Option(help="GHPULSE_CRAWLER_LISTEN")] = None,
    db: Annotated[str | None, typer.Option(help="GHPULSE_CRAWLER_DB (SQLAlchemy URL)")] = None,
    scheduler_addr: Annotated[str | None, typer.Option(help="GHPULSE_SCHEDULER_ADDR")] = None,
    github_api_url: Annotated[str | None, typer.Option(help="GHPULSE_GITHUB_API_URL")] = None,
    github_api: Annotated[
        str | None, typer.Option(help="GHPULSE_GITHUB_API: auto, graphql or rest")
    ] = None,
    export_dir: Annotated[str | None, typer.Option(help="GHPULSE_EXPORT_DIR")] = None,
    slots: Annotated[int | None, typer.Option(help="GHPULSE_CRAWLER_SLOTS")] = None,
    worker_id: Annotated[str | None, typer.Option(help="GHPULSE_CRAWLER_ID")] = None,
    metrics_listen: Annotated[
        str | None, typer.Option(help="GHPULSE_CRAWLER_METRICS_LISTEN")
    ] = None,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not apply migrations")
    ] = False,
    insecure: InsecureOpt = False,
) -> None:
    """Start a crawler (PullRequestService; takes work from the scheduler)."""
    from crawler_service.app import run_forever
    from crawler_service.settings import CrawlerSettings

    ghlog.configure()
    overrides = _given(
        listen=listen,
        db=db,
        scheduler_addr=scheduler_addr,
        github_api_url=github_api_url,
        github_api=github_api,
        export_dir=export_dir,
        slots=slots,
        worker_id=worker_id,
        metrics_listen=metrics_listen,
    )
    if no_migrate:
        overrides["migrate"] = False
    if insecure:
        overrides["insecure"] = True
    with startup_errors("crawler"):
        settings = CrawlerSettings(**overrides)
        for secret in (settings.github_token, settings.token):
            if secret is not None:
                ghlog.register_secret(secret.get_secret_value())
        asyncio.run(run_forever(settings))


def migrate(
    target: Annotated[MigrateTarget, typer.Argument(help="Which database")] = MigrateTarget.ALL,
    scheduler_db: Annotated[str | None, typer.Option(help="GHPULSE_SCHEDULER_DB")] = None,
    crawler_db: Annotated[str | None, typer.Option(help="GHPULSE_CRAWLER_DB")] = None,
) -> None:
    """Apply database migrations (also done at service start-up unless --no-migrate)."""
    ghlog.configure()
    if target in (MigrateTarget.ALL, MigrateTarget.SCHEDULER):
        from scheduler_service.db.migrations import upgrade as upgrade_scheduler
        from scheduler_service.settings import SchedulerSettings

        with startup_errors("migrate scheduler"):
            url = SchedulerSettings(**_given(db=scheduler_db)).db
            upgrade_scheduler(url)
        typer.echo(f"scheduler database migrated: {safe_url(url)}")
    if target in (MigrateTarget.ALL, MigrateTarget.CRAWLER):
        from crawler_service.data.migrations import upgrade as upgrade_crawler
        from crawler_service.settings import CrawlerSettings

        with startup_errors("migrate crawler"):
            url = CrawlerSettings(**_given(db=crawler_db)).db
            upgrade_crawler(url)
        typer.echo(f"crawler database migrated: {safe_url(url)}")


def register(app: typer.Typer) -> None:
    app.command()(scheduler)
    app.command()(crawler)
    app.command()(migrate)
