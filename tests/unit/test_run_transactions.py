"""`SyncRunStore` (the run store's transactions): a trigger that keeps losing insert races is
UNAVAILABLE with a short retry hint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from common.errors import Unavailable
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql import creation
from scheduler_service.runs.sql.store import SqlRunStore
from tests.support.runs import new_run


async def test_contention_retry_hint_is_seconds_not_a_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlRunStore.open(f"sqlite:///{tmp_path}/contention.db", RetryPolicy())

    def lose_the_race(*_args: Any) -> None:
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    monkeypatch.setattr(creation, "create", lose_the_race)
    try:
        with pytest.raises(Unavailable) as info:
            await store.create_run(new_run(), datetime(2026, 3, 1, tzinfo=UTC), timedelta(days=1))
    finally:
        await store.close()
    assert info.value.retry_after is not None
    assert timedelta(0) < info.value.retry_after <= timedelta(seconds=5)
