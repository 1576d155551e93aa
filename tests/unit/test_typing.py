"""The whole tree type-checks: mypy strict over the packages, relaxed over tests/ (bench/ strict),
as configured in pyproject.toml — run the way a developer runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# A cold mypy run over ~280 files takes a minute or more on a busy 2-core machine.
@pytest.mark.timeout(900)
def test_mypy_is_clean_over_packages_tests_and_benchmarks() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout
