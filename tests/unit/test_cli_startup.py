"""`startup_errors` (ghpulse.cli.startup): a start-up failure becomes one error line and exit 1; a
command's own exit (typer.Exit is a RuntimeError) passes through."""

from __future__ import annotations

import pytest
import typer

from ghpulse.cli.startup import startup_errors


def test_a_commands_own_exit_code_passes_through(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as raised, startup_errors("demo"):
        raise typer.Exit(3)
    assert raised.value.exit_code == 3
    assert capsys.readouterr().err == ""


def test_a_start_up_failure_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as raised, startup_errors("crawler"):
        raise RuntimeError("Failed to bind to address 127.0.0.1:1; set GRPC_VERBOSITY\nmore")
    assert raised.value.exit_code == 1
    assert capsys.readouterr().err == (
        "error: crawler: RuntimeError: Failed to bind to address 127.0.0.1:1; set GRPC_VERBOSITY\n"
    )
