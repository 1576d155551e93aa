"""The fetch lease of a repository outlives any wait of its sweep (it is renewed in the
background), and a repository another run holds is left until the others are swept, then the run
is handed back (it does not wait in a crawler slot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from common.jobs import CrawlSpec
from crawler_service.data.store import CrawlerStore
from crawler_service.errors import HandBack
from crawler_service.jobs.registry import StepContext
from crawler_service.jobs.steps.fetch import FetchStep
from ghpulse.testing.fake_github import FakeGitHub
from tests.support.crawl import GADGETS, WIDGETS, client, make_dataset

TTL = timedelta(minutes=5)


class VirtualTime:
    """One clock for the store (datetimes), the client and the fake GitHub (epoch seconds)."""

    def __init__(self) -> None:
        self.epoch = 1_700_000_000.0

    def __call__(self) -> float:
        return self.epoch

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.epoch, UTC)


class Sleepers:
    """A sleep that returns only when the test wakes the sleeper up (`next` hands it over)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[float, asyncio.Future[None]]] = asyncio.Queue()

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((seconds, woken))
        await woken

    async def next(self) -> tuple[float, asyncio.Future[None]]:
        return await self._queue.get()


@pytest.fixture
def time() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
def fake(time: VirtualTime) -> Iterator[FakeGitHub]:
    with FakeGitHub(make_dataset(), clock=time) as server:
        yield server


@pytest.fixture
async def store(crawler_db_url: str, time: VirtualTime) -> AsyncIterator[CrawlerStore]:
    async with await CrawlerStore.open(crawler_db_url, clock=time) as opened:
        yield opened


def context(spec: CrawlSpec, messages: list[str]) -> StepContext:
    async def sink(_step: str, _current: int, _total: int, message: str) -> None:
        messages.append(message)

    return StepContext("run-1", 1, spec, "fetch", MappingProxyType({}), sink)


async def test_the_lease_outlives_a_rate_limit_wait_longer_than_its_ttl(store, fake, time):
    github_waits, lease_waits = Sleepers(), Sleepers()
    fake.faults.secondary_limit(r"/pulls$", retry_after=900)
    async with client(fake, sleep=github_waits.sleep, clock=time) as github:
        step = FetchStep(store, github, lock_ttl=TTL, lease_sleep=lease_waits.sleep, api="rest")
        sweep = asyncio.create_task(step.run(context(CrawlSpec((WIDGETS,)), [])))
        delay, github_woken = await github_waits.next()
        assert delay == 900

        # Fifteen minutes pass in the rate-limit wait, three times the lease's TTL.
        for _ in range(9):
            interval, lease_woken = await lease_waits.next()
            assert interval == TTL.total_seconds() / 3
            time.epoch += interval
            lease_woken.set_result(None)
        await lease_waits.next()  # the ninth renewal is done: the renewer sleeps again
        assert not await store.try_lock(WIDGETS, "run-2", TTL)

        github_woken.set_result(None)
        output = await sweep

    assert output["repositories"] == [WIDGETS]
    assert output["failed_repositories"] == []


async def test_a_held_repository_hands_the_run_back_once_the_others_are_swept(store, fake, time):
    assert await store.try_lock(WIDGETS, "run-other", TTL)
    messages: list[str] = []
    async with client(fake, clock=time) as github:
        step = FetchStep(store, github, lock_ttl=TTL, busy_retry=20.0, api="rest")
        with pytest.raises(HandBack) as handed:
            await step.run(context(CrawlSpec((WIDGETS, GADGETS)), messages))

        assert handed.value.code == "REPOSITORY_BUSY"
        assert handed.value.retry_after == 20.0
        assert WIDGETS in handed.value.message
        # The repository it could sweep is done and recorded; the held one is untouched.
        assert [r.repository for r in await store.fetch_results("run-1")] == [GADGETS]
        assert not await store.try_lock(WIDGETS, "run-1", TTL)

        # The next attempt, once the other run is done, sweeps only what is left.
        await store.unlock(WIDGETS, "run-other")
        fake.reset_requests()
        output = await step.run(context(CrawlSpec((WIDGETS, GADGETS)), messages))

    assert {r.path.split("/")[3] for r in fake.requests} == {WIDGETS.split("/")[1]}
    assert output["repositories"] == [GADGETS, WIDGETS]
