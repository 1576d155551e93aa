"""`ghpulse tokens create / list / revoke`: the tokens file both services read (GHPULSE_AUTH_FILE).

`create` prints the new token as the last line of stdout, once: only its hash is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.auth import tokens
from common.auth.scopes import SCOPES
from ghpulse.cli.output import EXIT_USAGE, fail

tokens_app = typer.Typer(
    help="Manage the bearer tokens of GHPULSE_AUTH_FILE (only hashes are stored).",
    no_args_is_help=True,
)
FileOpt = Annotated[
    Path,
    typer.Option("--file", "-f", envvar="GHPULSE_AUTH_FILE", help="The tokens file."),
]


def _labels(items: list[str] | None) -> dict[str, str]:
    labels = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"error: --label {item!r}: expected key=value", EXIT_USAGE)
        labels[key.strip()] = value.strip()
    return labels


@tokens_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Recorded as who triggered, cancelled, changed.")],
    file: FileOpt,
    scope: Annotated[
        list[str], typer.Option("--scope", "-s", help=f"Repeatable: {', '.join(SCOPES)}.")
    ],
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="k=v: only runs with this label (repeatable)."),
    ] = None,
) -> None:
    """Create a token (the file is created if absent); prints it as the last line, once."""
    try:
        token = tokens.create(file, name, scope, _labels(label))
    except tokens.TokenFileError as exc:
        fail(f"error: {exc}", EXIT_USAGE)
    typer.echo(f"created token {name!r} ({', '.join(scope)}) in {file}; it is shown only once:")
    typer.echo(token)


@tokens_app.command("list")
def list_tokens(file: FileOpt) -> None:
    """List the tokens: name, scopes, label scope, creation time (never the token)."""
    try:
        records = tokens.read(file)
    except tokens.TokenFileError as exc:
        fail(f"error: {exc}")
    for record in records:
        labels = ",".join(f"{k}={v}" for k, v in sorted(record.labels.items())) or "-"
        typer.echo(f"{record.name}\t{','.join(record.scopes)}\t{labels}\t{record.created_at}")


@tokens_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The token to remove.")],
    file: FileOpt,
) -> None:
    """Remove a token; running services stop accepting it with their next call."""
    try:
        removed = tokens.revoke(file, name)
    except tokens.TokenFileError as exc:
        fail(f"error: {exc}")
    if not removed:
        fail(f"error: no token named {name!r} in {file}")
    typer.echo(f"revoked token {name!r}")


def register(app: typer.Typer) -> None:
    app.add_typer(tokens_app, name="tokens")
