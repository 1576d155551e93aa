"""PostgreSQL engine options: server-side prepared statements are off behind PgBouncer
(GHPULSE_DB_PGBOUNCER), and the run store's engine has no pre-ping round trip."""

from __future__ import annotations

from typing import Any

import pytest

from common import db


def _created_with(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> dict[str, object]:
    seen: dict[str, object] = {}

    def create_engine(_url: object, **options: object) -> object:
        seen.update(options)
        return object()

    monkeypatch.setattr(db, "create_engine", create_engine)
    monkeypatch.setattr(db, "limit_statements", lambda *_args: None)
    db.create_pooled("postgresql://u@h/d", timeouts=db.Timeouts(3, 0), **kwargs)
    return seen


def test_behind_pgbouncer_psycopg_prepares_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(db.PGBOUNCER_ENV, "1")
    options = _created_with(monkeypatch)
    assert options["connect_args"] == {"connect_timeout": 3, "prepare_threshold": None}


def test_direct_postgresql_keeps_prepared_statements(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(db.PGBOUNCER_ENV, raising=False)
    options = _created_with(monkeypatch)
    assert options["connect_args"] == {"connect_timeout": 3}
    assert options["pool_pre_ping"] is True


def test_a_hot_path_engine_may_turn_pre_ping_off(monkeypatch: pytest.MonkeyPatch) -> None:
    options = _created_with(monkeypatch, pool_pre_ping=False)
    assert options["pool_pre_ping"] is False


def _timeouts_of(
    monkeypatch: pytest.MonkeyPatch, url: str, statement: float = 30.0
) -> tuple[dict[str, object], list[db.Timeouts | None]]:
    """The connect arguments of a pooled engine on `url`, and what its transactions are told to
    set (`limit_statements`'s argument)."""
    seen: dict[str, object] = {}
    per_transaction: list[db.Timeouts | None] = []

    def create_engine(_url: object, **options: object) -> object:
        seen.update(options)
        return object()

    monkeypatch.setattr(db, "create_engine", create_engine)
    monkeypatch.setattr(db, "limit_statements", lambda _e, t: per_transaction.append(t))
    db.create_pooled(url, timeouts=db.Timeouts(3, statement))
    connect_args = seen["connect_args"]
    assert isinstance(connect_args, dict)
    return connect_args, per_transaction


def test_a_direct_connection_has_the_statement_timeout_from_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No `SET LOCAL` round trip per transaction: the session starts with the setting."""
    monkeypatch.delenv(db.PGBOUNCER_ENV, raising=False)
    connect_args, per_transaction = _timeouts_of(monkeypatch, "postgresql://u@h/d", 2.5)
    assert connect_args["options"] == "-c statement_timeout=2500"
    assert per_transaction == [None]


def test_behind_pgbouncer_each_transaction_sets_the_statement_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PgBouncer refuses the `options` start-up parameter, and a session setting would outlive
    the transaction on a pooled server connection."""
    monkeypatch.delenv(db.PGBOUNCER_ENV, raising=False)
    for url in ("postgresql://u@h:6432/d?prepare_threshold=none", "postgresql://u@h:6432/d"):
        if "prepare_threshold" not in url:
            monkeypatch.setenv(db.PGBOUNCER_ENV, "1")
        connect_args, per_transaction = _timeouts_of(monkeypatch, url)
        assert "options" not in connect_args
        assert per_transaction == [db.Timeouts(3, 30.0)]


def test_the_urls_own_libpq_options_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(db.PGBOUNCER_ENV, raising=False)
    url = "postgresql://u@h/d?options=-c%20search_path%3Dghpulse"
    connect_args, _ = _timeouts_of(monkeypatch, url)
    assert connect_args["options"] == "-c search_path=ghpulse -c statement_timeout=30000"
    # One the URL sets itself is left alone.
    url = "postgresql://u@h/d?options=-c%20statement_timeout%3D5000"
    connect_args, _ = _timeouts_of(monkeypatch, url)
    assert connect_args["options"] == "-c statement_timeout=5000"


def test_no_statement_timeout_sets_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(db.PGBOUNCER_ENV, raising=False)
    connect_args, per_transaction = _timeouts_of(monkeypatch, "postgresql://u@h/d", 0)
    assert "options" not in connect_args
    assert per_transaction == [None]
