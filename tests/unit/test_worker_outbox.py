"""The worker's outbox: order kept, progress coalesced (latest wins), nothing else dropped."""

from __future__ import annotations

import asyncio

from crawler_service.worker.outbox import Outbox


async def _drain(outbox: Outbox[str]) -> list[str]:
    items = []
    while outbox.pending("a") or outbox.pending("b"):
        entry = await outbox.get()
        outbox.ack(entry)
        items.append(entry.item)
    return items


async def test_keeps_order() -> None:
    outbox: Outbox[str] = Outbox()
    for item in ("started", "finished", "result"):
        outbox.put("a", item)

    assert await _drain(outbox) == ["started", "finished", "result"]
    assert len(outbox) == 0


async def test_unsent_progress_is_replaced_in_place() -> None:
    outbox: Outbox[str] = Outbox()
    outbox.put("a", "started:fetch")
    outbox.put("a", "progress:fetch 1", replace_key=("a", "fetch"))
    outbox.put("b", "started:other")
    outbox.put("a", "progress:fetch 2", replace_key=("a", "fetch"))
    outbox.put("a", "progress:fetch 3", replace_key=("a", "fetch"))
    outbox.put("a", "finished:fetch")

    assert await _drain(outbox) == [
        "started:fetch",
        "progress:fetch 3",
        "started:other",
        "finished:fetch",
    ]


async def test_progress_of_other_steps_and_attempts_is_kept_apart() -> None:
    outbox: Outbox[str] = Outbox()
    outbox.put("a", "a fetch 1", replace_key=("a", "fetch"))
    outbox.put("a", "a count 1", replace_key=("a", "count"))
    outbox.put("b", "b fetch 1", replace_key=("b", "fetch"))
    outbox.put("a", "a fetch 2", replace_key=("a", "fetch"))

    assert await _drain(outbox) == ["a fetch 2", "a count 1", "b fetch 1"]


async def test_progress_taken_for_sending_is_not_overwritten() -> None:
    outbox: Outbox[str] = Outbox()
    outbox.put("a", "progress 1", replace_key=("a", "fetch"))
    in_transit = await outbox.get()
    outbox.put("a", "progress 2", replace_key=("a", "fetch"))

    assert in_transit.item == "progress 1"
    assert outbox.pending("a") == ["progress 2"]
    assert len(outbox) == 2


async def test_requeued_entry_goes_first() -> None:
    outbox: Outbox[str] = Outbox()
    outbox.put("a", "one")
    outbox.put("a", "two")
    entry = await outbox.get()

    outbox.requeue(entry)

    assert outbox.pending("a") == ["one", "two"]


async def test_drop_forgets_one_attempt() -> None:
    outbox: Outbox[str] = Outbox()
    outbox.put("a", "a started")
    outbox.put("b", "b started")
    outbox.put("a", "a progress", replace_key=("a", "fetch"))

    assert outbox.drop("a") == 2
    outbox.put("a", "a progress again", replace_key=("a", "fetch"))

    assert outbox.pending("b") == ["b started"]
    assert outbox.pending("a") == ["a progress again"]


async def test_get_waits_for_a_report() -> None:
    outbox: Outbox[str] = Outbox()
    getting = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)
    assert not getting.done()

    outbox.put("a", "late")

    assert (await getting).item == "late"


async def test_wait_empty_returns_once_everything_is_acked() -> None:
    outbox: Outbox[str] = Outbox()
    outbox.put("a", "one")
    waiting = asyncio.create_task(outbox.wait_empty())
    entry = await outbox.get()
    await asyncio.sleep(0)
    assert not waiting.done()

    outbox.ack(entry)

    await waiting
    assert len(outbox) == 0
