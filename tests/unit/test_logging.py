"""Log rendering and redaction: both renderers, structlog and stdlib records, tracebacks."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from common import logging as ghlog

SECRET = "ghp_UnitTestSecretValue0000000000000000"


class Leaky:
    """An object whose repr holds the secret (only the rendered-line pass can catch it)."""

    def __repr__(self) -> str:
        return f"Leaky(token={SECRET})"


@pytest.fixture(params=["json", "console"])
def output(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    ghlog.register_secret(SECRET)
    ghlog.configure("info", request.param, stream=stream, cache=False)
    yield stream
    ghlog.reset()


def _fail() -> None:
    raise RuntimeError(f"GitHub said no to {SECRET}")


def test_secret_never_reaches_a_line(output: io.StringIO) -> None:
    log = structlog.get_logger("test")
    log.info("plain", token=SECRET, text=f"Bearer {SECRET}")
    log.info("nested", headers={"Authorization": f"Bearer {SECRET}"}, args=[SECRET, (SECRET,)])
    log.info("object", value=Leaky())
    log.info(f"event text {SECRET}")
    try:
        _fail()
    except RuntimeError:
        log.exception("structlog.traceback")
        logging.getLogger("some.library").exception("stdlib traceback %s", SECRET)
    logging.getLogger("some.library").warning("stdlib %s", SECRET)

    text = output.getvalue()
    assert SECRET not in text
    assert text.count(ghlog.REDACTED) >= 10
    for event in ("plain", "nested", "object", "structlog.traceback", "stdlib traceback"):
        assert event in text
    assert "RuntimeError" in text  # the tracebacks are there, only redacted
    assert "in _fail" in text  # frames kept


def test_stdlib_records_carry_the_bound_run_context(output: io.StringIO) -> None:
    with structlog.contextvars.bound_contextvars(run_id="run-7", attempt=2, step="fetch"):
        logging.getLogger("sqlalchemy.pool").warning("connection invalidated")
    logging.getLogger("sqlalchemy.pool").warning("outside any run")

    inside, outside = output.getvalue().splitlines()
    for key, value in (("run_id", "run-7"), ("attempt", "2"), ("step", "fetch")):
        assert value in inside and key in inside
        assert key not in outside
    assert "sqlalchemy.pool" in inside


def test_json_lines_are_objects_with_level_and_time() -> None:
    stream = io.StringIO()
    ghlog.configure("info", "json", stream=stream, cache=False)
    try:
        structlog.get_logger("test").warning("run.dispatched", run_id="r1", attempt=1)
        logging.getLogger("grpc").error("stdlib line")
        structlog.get_logger("test").debug("below the level")
    finally:
        ghlog.reset()

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "run.dispatched" and first["level"] == "warning"
    assert (first["run_id"], first["attempt"]) == ("r1", 1)
    assert first["timestamp"].endswith("Z")
    assert second["event"] == "stdlib line" and second["logger"] == "grpc"
    assert second["level"] == "error"


def test_format_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setenv("GHPULSE_LOG_FORMAT", "console")
    ghlog.configure("info", stream=stream, cache=False)
    try:
        structlog.get_logger("test").info("hello", run_id="r1")
    finally:
        ghlog.reset()

    line = stream.getvalue()
    assert "hello" in line and "run_id=r1" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_reconfiguring_replaces_the_stdlib_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    ghlog.configure("info", "json", stream=first, cache=False)
    ghlog.configure("info", "json", stream=second, cache=False)
    try:
        logging.getLogger("x").warning("once")
    finally:
        ghlog.reset()

    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://x-access-token:ghp_1@h/api/v3/x", "https://[redacted]@h/api/v3/x"),
        ("see http://user@host:8080/p and ftp://a:b@c", "see http://[redacted]@host:8080/p and "
         "ftp://[redacted]@c"),
        ("mail me at a@b.example, no URL here", "mail me at a@b.example, no URL here"),
        ("https://host/path?q=a@b", "https://host/path?q=a@b"),
    ],
)  # fmt: skip
def test_url_credentials_are_redacted(text: str, expected: str) -> None:
    assert ghlog.redact_text(text) == expected
