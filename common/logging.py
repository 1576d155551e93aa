"""structlog set-up: JSON lines off a terminal (or with GHPULSE_LOG_FORMAT=json), console on one.

Records of stdlib loggers (grpc, sqlalchemy, asyncio, ...) go through the same processors, so they
are rendered alike, carry the bound run context and are redacted too. Redaction runs twice: on the
event's values before rendering, and on the rendered line (for values whose repr holds a secret).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRETS: set[str] = set()
REDACTED = "[redacted]"
#: The userinfo part of a URL: `https://x-access-token:ghp_…@host` -> `https://[redacted]@host`.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
#: The root handler `configure` installed, replaced when it is called again.
_handler: logging.Handler | None = None


def register_secret(value: str | None) -> None:
    """Never let `value` (e.g. the GitHub token) appear in a log line."""
    if value:
        _SECRETS.add(value)


def redact_text(text: str) -> str:
    """`text` with every registered secret and the credentials of every URL (`user:pass@` in
    `scheme://user:pass@host`) replaced by `REDACTED`."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _URL_CREDENTIALS.sub(rf"\g<scheme>{REDACTED}@", text) if "@" in text else text


def redact_value(value: Any) -> Any:
    """`value` (JSON-like: strings, dicts, lists) with `redact_text` applied to every string."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(item) for item in value)
    return value


def redact(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Processor: redact secrets from the event's values (nested dicts and lists included)."""
    for key, value in event_dict.items():
        event_dict[key] = redact_value(value)
    return event_dict


def redact_rendered(_logger: Any, _name: str, rendered: Any) -> Any:
    """Processor after the renderer: the last line of defence (reprs of arbitrary objects)."""
    return redact_text(rendered) if isinstance(rendered, str) else rendered


def _renderer(fmt: str, colors: bool) -> Any:
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    # Tracebacks are formatted as plain text by `format_exc_info` first, so they are redacted
    # (a rich traceback would print local variables, the token among them).
    return structlog.dev.ConsoleRenderer(
        colors=colors, exception_formatter=structlog.dev.plain_traceback
    )


def _pre_chain() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _install_stdlib(renderer: Any, level: str, stream: TextIO) -> None:
    global _handler
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_pre_chain(), structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            renderer,
            redact_rendered,
        ],
    )
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(stream)
    _handler.setFormatter(formatter)
    root.addHandler(_handler)
    root.setLevel(level)


#: Loggers kept at WARNING unless the level is DEBUG.
CHATTY_LOGGERS = ("httpx", "alembic")


def configure(
    level: str | None = None,
    fmt: str | None = None,
    *,
    stream: TextIO | None = None,
    cache: bool = True,
) -> None:
    """Configure structlog and the stdlib root logger (call once per process; tests pass
    `cache=False` so that reconfiguring takes effect on loggers already used)."""
    level = (level or os.environ.get("GHPULSE_LOG_LEVEL", "info")).upper()
    stream = stream or sys.stderr
    tty = stream.isatty()
    fmt = fmt or os.environ.get("GHPULSE_LOG_FORMAT") or ("console" if tty else "json")
    renderer = _renderer(fmt, colors=tty)
    structlog.configure(
        processors=[
            *_pre_chain(),
            structlog.processors.format_exc_info,
            redact,
            renderer,
            redact_rendered,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=cache,
    )
    _install_stdlib(renderer, level, stream)
    # Libraries that narrate at INFO (httpx: every request; Alembic: its plugins and each
    # revision) stay quiet unless debugging: the services log what
    # matters as events of their own (`migrations.current`, `schedules.started`, GitHub events).
    chatty = logging.getLevelName(level) > logging.DEBUG
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if chatty else logging.NOTSET)


def reset() -> None:
    """Undo `configure` (structlog defaults, no root handler of ours); for tests."""
    global _handler
    structlog.reset_defaults()
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None
