"""The `ghpulse` command."""

from __future__ import annotations

import typer

from ghpulse.cli import demo, queries, runs, schedules, services, up

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
schedules.register(app)
up.register(app)
demo.register(app)


def main() -> None:
    app()
