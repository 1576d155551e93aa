"""The `ghpulse` command."""

from __future__ import annotations

import typer

from common.cli import queries, runs, services

app = typer.Typer(
    name="ghpulse",
    help="Crawl GitHub pull requests on demand and on a schedule, over gRPC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
services.register(app)
runs.register(app)
queries.register(app)


def main() -> None:
    app()
