"""Start-up is quiet: one `migrations.current` line per store, no Alembic or APScheduler chatter
(unless the level is debug)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from common import logging as ghlog
from crawler_service.data import migrations as crawler_migrations
from crawler_service.data.migrations import upgrade as upgrade_crawler
from scheduler_service.app import SchedulerApp
from scheduler_service.db import migrations as scheduler_migrations
from scheduler_service.db.migrations import upgrade as upgrade_scheduler
from tests.support.cluster import scheduler_settings


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    ghlog.configure("info", "json", stream=out, cache=False)
    yield out
    ghlog.reset()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _history(script_location: str) -> list[str]:
    """Every revision of a store's migrations, oldest first."""
    config = Config()
    config.set_main_option("script_location", script_location)
    walked = ScriptDirectory.from_config(config).walk_revisions()
    return [revision.revision for revision in reversed(list(walked))]


@pytest.mark.parametrize(
    ("upgrade", "store", "script_location"),
    [
        (upgrade_scheduler, "scheduler", scheduler_migrations.SCRIPT_LOCATION),
        (upgrade_crawler, "crawler", crawler_migrations.SCRIPT_LOCATION),
    ],
)
def test_one_line_per_store_with_what_was_applied(
    stream: io.StringIO,
    tmp_path: Path,
    upgrade: Callable[[str], None],
    store: str,
    script_location: str,
) -> None:
    history = _history(script_location)
    url = f"sqlite:///{tmp_path}/{store}.db"
    upgrade(url)
    upgrade(url)  # nothing left to apply
    first, second = _lines(stream)
    assert first["event"] == second["event"] == "migrations.current"
    assert first["store"] == second["store"] == store
    assert first["revision"] == second["revision"] == history[-1]
    assert first["applied"] == history
    assert second["applied"] is None


def test_debug_level_shows_alembic(tmp_path: Path) -> None:
    out = io.StringIO()
    ghlog.configure("debug", "json", stream=out, cache=False)
    try:
        upgrade_crawler(f"sqlite:///{tmp_path}/c.db")
    finally:
        ghlog.reset()
    loggers = {line.get("logger") for line in _lines(out)}
    assert "alembic.runtime.migration" in loggers


async def test_scheduler_start_logs_no_library_chatter(stream: io.StringIO, tmp_path: Path) -> None:
    async with SchedulerApp(scheduler_settings(tmp_path)):
        pass
    lines = _lines(stream)
    chatter = [line for line in lines if str(line.get("logger", "")).startswith(("alembic", "aps"))]
    assert chatter == []
    assert lines[0]["event"] == "migrations.current"
