"""The notice a write transaction sends to the other replicas: what it carries, and what happens
past PostgreSQL's payload limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler_service.cluster.notice import MAX_PAYLOAD, Notice, of_transaction
from scheduler_service.runs.model import EventKind, RunEvent

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _event(
    run_id: str, seq: int, kind: EventKind = EventKind.STEP_PROGRESS, **data: str
) -> RunEvent:
    return RunEvent(run_id, seq, NOW, 1, kind, dict(data))


def test_a_transaction_notice_carries_each_runs_seq_span_and_the_earliest_retry() -> None:
    later, sooner = NOW + timedelta(seconds=9), NOW + timedelta(seconds=3)
    events = [
        _event("run_a", 4),
        _event("run_a", 5, EventKind.STATE_CHANGED, state="pending", retry_at=later.isoformat()),
        _event("run_b", 2, EventKind.STATE_CHANGED, state="pending", retry_at=sooner.isoformat()),
    ]
    notice = Notice.decode(of_transaction("me", events, dispatchable=True).encode())
    spans = {"run_a": (4, 5), "run_b": (2, 2)}
    assert notice == Notice("me", True, sooner, spans, inline=tuple(events))


def test_events_too_big_to_carry_are_announced_by_their_spans() -> None:
    events = [_event("run_a", seq, message="x" * 500) for seq in range(1, 31)]
    encoded = of_transaction("me", events, dispatchable=False).encode()
    assert len(encoded.encode()) <= MAX_PAYLOAD
    notice = Notice.decode(encoded)
    assert (notice.inline, notice.events, notice.overflow) == ((), {"run_a": (1, 30)}, False)


def test_a_schedule_change_is_a_notice_of_its_own() -> None:
    notice = Notice.decode(Notice("me", schedules=True).encode())
    assert notice == Notice("me", schedules=True)
    assert not notice.empty


def test_a_transaction_that_changed_nothing_watched_sends_nothing() -> None:
    assert of_transaction("me", [], dispatchable=False).empty


def test_too_many_runs_for_one_payload_become_a_catch_up_notice() -> None:
    events = [_event(f"run_{i:030d}", 1) for i in range(400)]
    encoded = of_transaction("me", events, dispatchable=True).encode()
    assert len(encoded.encode()) <= MAX_PAYLOAD
    notice = Notice.decode(encoded)
    assert (notice.overflow, notice.events, notice.dispatchable) == (True, {}, True)


def test_an_unreadable_payload_is_a_catch_up_notice() -> None:
    notice = Notice.decode("not json")
    assert notice.overflow and notice.dispatchable


def test_every_notice_of_a_sender_starts_with_its_prefix_and_no_other_senders() -> None:
    """The listener skips its own notices by this prefix before decoding them."""
    events = [_event("run_a", seq, message="x" * 500) for seq in range(1, 31)]
    notices = [
        of_transaction("abc", [_event("run_a", 1)], dispatchable=True).encode(),
        of_transaction("abc", events, dispatchable=False).encode(),
        of_transaction("abc", [_event(f"r{i:030d}", 1) for i in range(400)], True).encode(),
        Notice("abc", cancels=True).encode(),
        Notice("abc", schedules=True).encode(),
    ]
    for encoded in notices:
        assert encoded.startswith(Notice.prefix_of("abc")), encoded[:40]
        # A sender whose id is a prefix of this one's is not matched.
        assert not encoded.startswith(Notice.prefix_of("ab"))
        assert Notice.decode(encoded).sender == "abc"
