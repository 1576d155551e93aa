"""Real processes: a scheduler and crawlers, started with the `ghpulse` command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Processes

#: How much of each service's log a failed acceptance test shows.
LOG_TAIL = 6000


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    yield running
    for service in reversed(running.started):
        service.kill()
    # Shown only when the test failed (pytest reports captured output of failures): the
    # services' own logs say what went wrong inside them.
    for service in (s for s in running.started if s.log.exists()):
        print(f"--- ghpulse {service.command} ({service.log.name}), last lines ---")
        print(service.log.read_text(errors="replace")[-LOG_TAIL:])
