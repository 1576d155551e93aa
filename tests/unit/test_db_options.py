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
