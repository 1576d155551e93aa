"""structlog set-up: JSON lines off a terminal (or with GHPULSE_LOG_FORMAT=json), console on one."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRETS: set[str] = set()
REDACTED = "[redacted]"


def register_secret(value: str | None) -> None:
    """Never let `value` (e.g. the GitHub token) appear in a log line."""
    if value:
        _SECRETS.add(value)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _SECRETS:
            if secret in value:
                value = value.replace(secret, REDACTED)
    return value


def redact(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        event_dict[key] = _redact_value(value)
    return event_dict


def configure(level: str | None = None, fmt: str | None = None) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    level = (level or os.environ.get("GHPULSE_LOG_LEVEL", "info")).upper()
    fmt = (
        fmt
        or os.environ.get("GHPULSE_LOG_FORMAT")
        or ("console" if sys.stderr.isatty() else "json")
    )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    # httpx logs every request at INFO; the GitHub client logs what matters as events.
    logging.getLogger("httpx").setLevel(logging.WARNING)
