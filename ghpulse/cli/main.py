"""The `ghpulse` command."""

from __future__ import annotations

import os
import sys

import typer

from common.auth.credentials import TOKEN_ENV
from ghpulse.cli import demo, queries, runs, schedules, services, tokens, up

app = typer.Typer(
    name="ghpulse",
    help=(
        "Crawl GitHub pull requests on demand and on a schedule, over gRPC. Client commands send "
        "--token TOKEN (anywhere on the line), $GHPULSE_TOKEN or the contents of "
        "$GHPULSE_TOKEN_FILE as 'authorization: Bearer'."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
services.register(app)
runs.register(app)
queries.register(app)
schedules.register(app)
up.register(app)
demo.register(app)
tokens.register(app)


def take_token(argv: list[str]) -> list[str]:
    """`argv` without `--token T` / `--token=T` (valid before or after any command), the token
    moved to $GHPULSE_TOKEN, which the client reads."""
    rest: list[str] = []
    items = iter(argv)
    for item in items:
        if item == "--token":
            os.environ[TOKEN_ENV] = next(items, "")
        elif item.startswith("--token="):
            os.environ[TOKEN_ENV] = item.partition("=")[2]
        else:
            rest.append(item)
    return rest


def main() -> None:
    app(args=take_token(sys.argv[1:]))
