"""`ghpulse` service commands that cannot start print one error line (no traceback) and exit 1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

GHPULSE = Path(sys.executable).parent / "ghpulse"
SECRET = "s3cret-db-password"


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _ghpulse(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GHPULSE_")}
    environ.update(env or {})
    result = subprocess.run(
        [str(GHPULSE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=environ,
    )
    return result.returncode, result.stdout + result.stderr


def _assert_one_line_error(code: int, output: str, *expected: str) -> None:
    assert code == 1, output
    # No uncaught exception (a traceback inside a JSON log line is a logged one).
    assert not any(line.startswith("Traceback") for line in output.splitlines()), output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    for text in expected:
        assert text in errors[0]


def test_crawler_on_a_busy_port(tmp_path: Path, busy_port: int) -> None:
    code, output = _ghpulse(tmp_path, "crawler", "--listen", f"127.0.0.1:{busy_port}")
    _assert_one_line_error(code, output, f"127.0.0.1:{busy_port}")


def test_scheduler_on_a_busy_port(tmp_path: Path, busy_port: int) -> None:
    code, output = _ghpulse(tmp_path, "scheduler", "--listen", f"127.0.0.1:{busy_port}")
    _assert_one_line_error(code, output, f"127.0.0.1:{busy_port}")


def test_crawler_with_an_unparseable_database_url(tmp_path: Path) -> None:
    code, output = _ghpulse(tmp_path, "crawler", "--listen", "127.0.0.1:0", "--db", "not-a-url")
    _assert_one_line_error(code, output)


def test_crawler_with_an_invalid_variable_names_it(tmp_path: Path) -> None:
    code, output = _ghpulse(tmp_path, "crawler", env={"GHPULSE_CRAWLER_SLOTS": "0"})
    _assert_one_line_error(code, output, "GHPULSE_CRAWLER_SLOTS")


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--github-api", "soap"], {}, "github_api"),
        ([], {"GHPULSE_GITHUB_API": "graphql", "GITHUB_TOKEN": ""}, "needs GITHUB_TOKEN"),
    ],
)
def test_crawler_with_an_impossible_github_api(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    code, output = _ghpulse(tmp_path, "crawler", *args, env=env)
    _assert_one_line_error(code, output, expected)


def test_migrate_of_an_unreachable_database_hides_its_password(tmp_path: Path) -> None:
    url = f"postgresql://ghp:{SECRET}@127.0.0.1:1/ghp"
    code, output = _ghpulse(tmp_path, "migrate", "crawler", "--crawler-db", url)
    _assert_one_line_error(code, output)
    assert SECRET not in output


def test_up_on_a_busy_port(tmp_path: Path, busy_port: int) -> None:
    code, output = _ghpulse(
        tmp_path,
        "up",
        "--dir",
        str(tmp_path / "data"),
        "--scheduler-listen",
        "127.0.0.1:0",
        "--crawler-listen",
        f"127.0.0.1:{busy_port}",
        "--scheduler-metrics",
        "",
        "--crawler-metrics",
        "",
    )
    _assert_one_line_error(code, output, f"127.0.0.1:{busy_port}")


@pytest.mark.parametrize("command", ["up", "demo"])
def test_a_data_directory_that_cannot_be_created(tmp_path: Path, command: str) -> None:
    (tmp_path / "a-file").write_text("")
    code, output = _ghpulse(tmp_path, command, "--dir", str(tmp_path / "a-file" / "data"))
    _assert_one_line_error(code, output, "a-file")


def test_demo_without_its_sample_data_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installation that lost the bundled dataset fails clearly instead of an empty table."""
    from typer.testing import CliRunner

    from ghpulse.cli.main import app
    from ghpulse.testing import fake_github

    empty = tmp_path / "no-sample"
    empty.mkdir()
    monkeypatch.setattr(fake_github, "SAMPLE_DIR", empty)

    result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "demo")])

    assert result.exit_code == 1
    assert f"error: demo: no sample data in {empty}" in result.output
