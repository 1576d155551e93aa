"""A crawler's slots as the scheduler counts them: a claim in progress holds a slot from other
claims, but it is no assignment (ListWorkers and the metrics report it free)."""

from __future__ import annotations

from datetime import UTC, datetime

from scheduler_service.orchestration.dispatch import Dispatcher, WorkerConn

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def crawler(slots: int) -> WorkerConn:
    return WorkerConn(id="c", slots=slots, version="1", connected_at=T0, last_heartbeat_at=T0)


async def _nothing(_worker_id: str) -> None:
    return None


def test_a_claim_in_progress_is_not_an_assignment():
    conn = crawler(3)
    conn.running["run_1"] = 1
    dispatcher = Dispatcher(_nothing)
    dispatcher.add(conn)
    with dispatcher.reserve() as reserved:
        assert reserved is conn
        assert (conn.free_slots, conn.claimable_slots) == (2, 1)
    assert (conn.free_slots, conn.claimable_slots) == (2, 2)


def test_the_last_slot_is_claimed_once():
    conn = crawler(1)
    dispatcher = Dispatcher(_nothing)
    dispatcher.add(conn)
    with dispatcher.reserve() as first, dispatcher.reserve() as second:
        assert (first, second) == (conn, None)


def test_a_draining_crawler_has_no_free_slot():
    conn = crawler(2)
    conn.draining = True
    assert (conn.free_slots, conn.claimable_slots) == (0, 0)
