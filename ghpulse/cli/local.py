"""`ghpulse up` and `ghpulse demo`: the scheduler and a crawler in one process, on one event loop.

The server modules are imported inside the functions so that client commands stay quick to start.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crawler_service.app import CrawlerApp
    from scheduler_service.app import SchedulerApp

#: How long the crawler may take to connect to the scheduler in the same process.
CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True)
class LocalConfig:
    """Where the in-process pair keeps its data and listens; `None` keeps a setting's default
    (its environment variable, then the built-in value)."""

    data_dir: Path
    scheduler_listen: str | None = None
    crawler_listen: str | None = None
    scheduler_metrics: str | None = None
    crawler_metrics: str | None = None
    github_api_url: str | None = None
    #: Extra settings for both services (e.g. quicker shutdowns for the demo).
    scheduler_extra: tuple[tuple[str, Any], ...] = ()
    crawler_extra: tuple[tuple[str, Any], ...] = ()


def _given(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def scheduler_app(config: LocalConfig) -> SchedulerApp:
    from scheduler_service.app import SchedulerApp
    from scheduler_service.settings import SchedulerSettings

    settings = SchedulerSettings(
        db=f"sqlite:///{config.data_dir / 'scheduler.db'}",
        **_given(listen=config.scheduler_listen, metrics_listen=config.scheduler_metrics),
        **dict(config.scheduler_extra),
    )
    return SchedulerApp(settings)


def crawler_app(config: LocalConfig, scheduler_addr: str) -> CrawlerApp:
    from crawler_service.app import CrawlerApp
    from crawler_service.settings import CrawlerSettings

    settings = CrawlerSettings(
        db=f"sqlite:///{config.data_dir / 'crawler.db'}",
        scheduler_addr=scheduler_addr,
        export_dir=str(config.data_dir / "exports"),
        **_given(
            listen=config.crawler_listen,
            metrics_listen=config.crawler_metrics,
            github_api_url=config.github_api_url,
        ),
        **dict(config.crawler_extra),
    )
    return CrawlerApp(settings)


@dataclass(frozen=True)
class LocalServices:
    scheduler: SchedulerApp
    crawler: CrawlerApp

    def metrics_urls(self) -> list[str]:
        servers = (self.scheduler.metrics_server, self.crawler.metrics_server)
        return [server.url for server in servers if server is not None]


@asynccontextmanager
async def local_services(config: LocalConfig) -> AsyncIterator[LocalServices]:
    """The scheduler, then a crawler connected to it; stopped in reverse order (the crawler hands
    back or finishes its runs while the scheduler still listens)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    scheduler = scheduler_app(config)
    await scheduler.start()
    try:
        crawler = crawler_app(config, scheduler.address)
        await crawler.start()
        try:
            assert crawler.worker is not None
            await asyncio.wait_for(crawler.worker.connected.wait(), CONNECT_TIMEOUT)
            yield LocalServices(scheduler, crawler)
        finally:
            await crawler.stop()
    finally:
        await scheduler.stop()
