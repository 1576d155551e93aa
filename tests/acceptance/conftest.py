"""Real processes: a scheduler and crawlers, started with the `ghpulse` command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Processes


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    yield running
    for service in reversed(running.started):
        service.kill()
