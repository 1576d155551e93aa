"""Start-up failures of the service commands as one clear line instead of a traceback.

A busy port, an unparseable or unreachable database or an invalid variable is the operator's to
fix, not a bug: `ghpulse scheduler|crawler|up|migrate` print `error: ...` and exit 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ghpulse.cli.output import fail

#: What the operator can fix: the gRPC server's bind failure is a RuntimeError, the metrics
#: server's an OSError, the databases' SQLAlchemy errors (whose texts never hold the password).
#: ValueError: the tokens file or the TLS settings are invalid (the message says which).
STARTUP_ERRORS = (SQLAlchemyError, RuntimeError, OSError, ValueError)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _violations(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
    )


@contextmanager
def startup_errors(what: str) -> Iterator[None]:
    """Turn configuration and start-up failures of `what` into one stderr line and exit 1."""
    try:
        yield
    except typer.Exit:
        raise  # the command's own exit code (typer.Exit is a RuntimeError)
    except ValidationError as exc:
        fail(f"error: {what}: invalid configuration: {_violations(exc)}")
    except STARTUP_ERRORS as exc:
        fail(f"error: {what}: {type(exc).__name__}: {_first_line(exc)}")


def safe_url(url: str) -> str:
    """`url` for display, its password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"
