"""The budget of a GitHub owner: a secondary limit pauses every request of the owner, in this
process and (through the crawler database) in the whole fleet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from crawler_service.data.budgets import BudgetStore
from crawler_service.data.store import CrawlerStore
from crawler_service.github.budget import BudgetState, TokenBudget
from crawler_service.github.client import GitHubClient
from crawler_service.github.graphql import GraphQLClient
from ghpulse.testing.fake_github import FakeGitHub
from tests.support.github import TOKEN, FakeClock, serve

API = "ghpulse-demo/api"


class HeldClock(FakeClock):
    """A fake clock whose sleepers stay asleep until the test releases them."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.sleeping = 0
        self._changed = asyncio.Condition()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        target = self.now + seconds
        async with self._changed:
            self.sleeping += 1
            self._changed.notify_all()
        await self.release.wait()
        self.now = max(self.now, target)

    async def wait_sleeping(self, count: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.sleeping >= count)


@pytest.fixture
def clock() -> HeldClock:
    return HeldClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeGitHub]:
    with serve(clock=clock) as fake:
        yield fake


def client(fake: FakeGitHub, clock: FakeClock, **options: Any) -> GitHubClient:
    return GitHubClient(fake.url, TOKEN, sleep=clock.sleep, clock=clock, concurrency=8, **options)


async def test_a_secondary_limit_pauses_every_request_of_the_client(fake, clock):
    fake.faults.secondary_limit(r"/pulls/1$", retry_after=30)
    limited = asyncio.Event()

    async def on_wait(_message: str) -> None:
        limited.set()

    async with client(fake, clock) as github:
        first = asyncio.create_task(github.pull(API, 1, on_wait=on_wait))
        await limited.wait()
        paused_at = clock.now
        others = [asyncio.create_task(github.pull(API, n)) for n in (2, 3, 4)]
        await clock.wait_sleeping(4)
        # Every other request waits: GitHub has seen only the one that got the limit.
        assert [r.status for r in fake.requests] == [403]
        clock.release.set()
        pulls = await asyncio.gather(first, *others)

    assert [pr["number"] for pr in pulls] == [1, 2, 3, 4]
    later = fake.requests[1:]
    assert len(later) == 4
    assert all(record.at >= paused_at + 30 for record in later)
    assert github.budget.waits == 3


async def test_the_graphql_client_of_the_token_shares_the_pause(fake, clock):
    budget = TokenBudget(sleep=clock.sleep, clock=clock)
    fake.faults.secondary_limit(r"/pulls/1$", retry_after=30)
    limited = asyncio.Event()

    async def on_wait(_message: str) -> None:
        limited.set()

    rest = client(fake, clock, budget=budget)
    graphql = GraphQLClient(fake.url, TOKEN, sleep=clock.sleep, clock=clock, budget=budget)
    async with rest, graphql:
        first = asyncio.create_task(rest.pull(API, 1, on_wait=on_wait))
        await limited.wait()
        query = asyncio.create_task(graphql.query("query { viewer { login } }", {}))
        await clock.wait_sleeping(2)
        assert [r.path for r in fake.requests] == ["/repos/ghpulse-demo/api/pulls/1"]
        clock.release.set()
        await first
        await asyncio.gather(query, return_exceptions=True)

    # Released together, the REST retry and the query may reach GitHub in either order.
    (sent,) = [record for record in fake.requests if record.path == "/graphql"]
    assert sent.at >= 1_700_000_030.0


# -- the fleet: four crawlers' clients on one crawler database ----------------------------------


@pytest.fixture
async def fleet(crawler_db_url, fake, clock) -> AsyncIterator[list[GitHubClient]]:
    """Four clients of one token, each with its own connection pool on the shared database (as
    four crawler processes have), their owner learned already."""
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(4):
            store = await stack.enter_async_context(await CrawlerStore.open(crawler_db_url))
            budget = TokenBudget(
                fake.user_login, shared=BudgetStore(store.engine), sleep=clock.sleep, clock=clock
            )
            clients.append(await stack.enter_async_context(client(fake, clock, budget=budget)))
        yield clients


async def test_no_crawler_sends_a_request_once_the_shared_budget_is_spent(fleet, fake, clock):
    first, *others = fleet
    fake.budget.set(1, reset_in=100)
    await first.pull(API, 1)
    assert first.stats.rate_limit_remaining == 0
    spent_at = clock.now

    waiting = [asyncio.create_task(c.pull(API, n)) for n, c in enumerate(others, start=2)]
    await clock.wait_sleeping(3)
    # None of the other crawlers has asked GitHub: the shared row said the budget is spent.
    assert [r.status for r in fake.requests] == [200]
    clock.release.set()
    pulls = await asyncio.gather(*waiting)

    assert [pr["number"] for pr in pulls] == [2, 3, 4]
    assert [r.status for r in fake.requests] == [200] * 4
    assert all(r.at >= spent_at + 100 for r in fake.requests[1:])


async def test_a_secondary_limit_pauses_the_whole_fleet(fleet, fake, clock):
    first, *others = fleet
    fake.faults.secondary_limit(r"/pulls/1$", retry_after=30)
    limited = asyncio.Event()

    async def on_wait(_message: str) -> None:
        limited.set()

    task = asyncio.create_task(first.pull(API, 1, on_wait=on_wait))
    await limited.wait()
    paused_at = clock.now
    waiting = [asyncio.create_task(c.pull(API, n)) for n, c in enumerate(others, start=2)]
    await clock.wait_sleeping(4)
    assert [r.status for r in fake.requests] == [403]
    clock.release.set()
    await asyncio.gather(task, *waiting)

    assert len(fake.requests) == 5
    assert all(r.at >= paused_at + 30 for r in fake.requests[1:])


async def test_a_healthy_budget_is_written_at_most_once_per_sync_interval(
    crawler_db_url, fake, clock
):
    writes: list[BudgetState] = []

    class Counting(BudgetStore):
        async def save_budget(self, owner: str, state: BudgetState) -> None:
            writes.append(state)
            await super().save_budget(owner, state)

    async with await CrawlerStore.open(crawler_db_url) as store:
        budget = TokenBudget(
            fake.user_login, shared=Counting(store.engine), sync_interval=60.0, clock=clock
        )
        async with client(fake, clock, budget=budget) as github:
            for number in range(1, 6):
                await github.pull(API, number)
        stored = await BudgetStore(store.engine).load_budget(fake.user_login)

    assert len(writes) == 1
    assert stored is not None
    assert stored.remaining == 4999
