"""`common.db.run_to_end`: a store call outlives the cancellation of its caller."""

from __future__ import annotations

import asyncio

import pytest

from common.db import run_to_end, runs_to_end


@runs_to_end
class Store:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.committed: list[str] = []

    async def write(self, item: str) -> str:
        self.entered.set()
        await self.gate.wait()
        self.committed.append(item)
        return item

    async def _private(self) -> None:
        await asyncio.sleep(0)


async def test_the_result_passes_through():
    store = Store()
    store.gate.set()
    assert await store.write("a") == "a"
    assert store.committed == ["a"]


async def test_a_cancelled_caller_waits_for_the_call_to_end_then_is_cancelled():
    store = Store()
    caller = asyncio.create_task(store.write("a"))
    await store.entered.wait()
    caller.cancel()
    await asyncio.sleep(0)
    caller.cancel()  # a second cancellation does not interrupt the call either
    await asyncio.sleep(0)
    assert not caller.done()
    store.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert store.committed == ["a"]


def test_only_public_coroutine_methods_are_wrapped():
    assert hasattr(Store.write, "__wrapped__")
    assert not hasattr(Store._private, "__wrapped__")
    assert not hasattr(Store.__init__, "__wrapped__")


async def test_a_plain_function_can_be_wrapped():
    async def double(x: int) -> int:
        return 2 * x

    assert await run_to_end(double)(2) == 4
