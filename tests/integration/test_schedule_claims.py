"""Schedules across replicas: due schedules are claimed (SKIP LOCKED) so each tick's work is done
once, by one replica; claim and record take their locks in one order (schedule, then firing);
a timer pass reads only the due schedules and never overlaps another. Two replicas here are two
firers and timers with their own engines (their own connections) on one database, in-process,
with one injected clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from common.clock import ManualClock
from common.db import async_url
from common.jobs import CrawlSpec
from scheduler_service.schedules.due import Claimed
from scheduler_service.schedules.model import Firing, FiringOutcome, Schedule, Template
from scheduler_service.schedules.ops import ScheduleOps
from scheduler_service.schedules.rows import firing_row
from scheduler_service.schedules.rows import firings as firings_table
from scheduler_service.schedules.store import SqlScheduleStore
from scheduler_service.schedules.timer import LIVE_POLL_EVERY, ScheduleTimer
from tests.support import postgres
from tests.support.schedule_replicas import START, Replica, open_replicas

MINUTE = timedelta(minutes=1)
FLEET = 1000


@pytest.fixture
def pg_url(scheduler_pg_template: str) -> Iterator[str]:
    with postgres.clone(scheduler_pg_template) as url:
        yield url


@pytest.fixture
async def replicas(scheduler_db_url: str) -> AsyncIterator[tuple[ManualClock, list[Replica]]]:
    async with open_replicas(scheduler_db_url) as opened:
        yield opened


def every_minute(i: int) -> Schedule:
    return Schedule(
        id=f"s{i:04d}",
        template=Template(CrawlSpec((f"octo/r{i}",))),
        interval=MINUTE,
        start_time=START,
    )


async def create_fleet(ops: ScheduleOps, count: int) -> None:
    for start in range(0, count, 50):
        chunk = range(start, min(start + 50, count))
        await asyncio.gather(*(ops.create(every_minute(i)) for i in chunk))


async def all_firings(url: str) -> list[tuple[str, datetime, str, str]]:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT schedule_id, nominal_time, outcome, scheduler_id FROM schedule_firings"
                )
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]
    finally:
        await engine.dispose()


# -- two replicas, 1,000 schedules ---------------------------------------------------------------


@pytest.mark.postgres
async def test_two_replicas_settle_each_tick_of_1000_schedules_once(pg_url: str) -> None:
    async with open_replicas(pg_url) as (clock, (a, b)):
        await create_fleet(a.ops, FLEET)
        for tick in (1, 2, 3):
            clock.set(START + tick * MINUTE + timedelta(seconds=1))
            # Both wake for the same tick; a deadlock or a double claim would fail here.
            claimed = await asyncio.gather(a.timer.sync(), b.timer.sync())
            assert sum(claimed) == FLEET, claimed  # every schedule claimed once per tick
            assert a.timer.next_due == b.timer.next_due == START + (tick + 1) * MINUTE
        firings = await all_firings(pg_url)
    per_tick = Counter((schedule_id, nominal) for schedule_id, nominal, _o, _s in firings)
    assert len(per_tick) == 3 * FLEET and set(per_tick.values()) == {1}
    outcomes = Counter(outcome for _id, _n, outcome, _s in firings)
    # No crawler: the first tick starts a run, the next ones find it active and skip.
    assert outcomes == {"started": FLEET, "skipped": 2 * FLEET}
    by_replica = Counter(scheduler for _id, _n, _o, scheduler in firings)
    assert set(by_replica) == {"a", "b"}


async def test_a_claimed_schedule_is_not_claimed_again_for_the_same_tick(
    replicas: tuple[ManualClock, list[Replica]],
) -> None:
    clock, (a, b) = replicas
    await create_fleet(a.ops, 100)
    clock.set(START + MINUTE)
    assert await a.timer.sync() == 100
    assert await b.timer.sync() == 0
    assert a.timer.next_due == b.timer.next_due == START + 2 * MINUTE


# -- lock order ---------------------------------------------------------------------------------


async def _waiting_on_a_lock(admin: object, database: str) -> bool:
    assert hasattr(admin, "execute")
    result = await admin.execute(
        text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'"
        ),
        {"db": database},
    )
    return int(result.scalar() or 0) > 0


@pytest.mark.postgres
async def test_claim_skips_a_held_schedule_and_record_locks_the_schedule_first(
    pg_url: str,
) -> None:
    async with open_replicas(pg_url, count=1) as (clock, (a,)):
        await a.ops.create(every_minute(1))
        await a.ops.create(every_minute(2))
        clock.set(START + MINUTE)
        [claimed] = await a.store.claim_due(clock.now(), "a", 10, "s0001")
        assert claimed.settlement.plan.fire == START + MINUTE
        engine = create_async_engine(async_url(pg_url))
        try:
            async with engine.connect() as holder, engine.connect() as other:
                # A transaction holds schedule s0001 (as an update or a record would).
                await holder.execute(text("SELECT 1 FROM schedules WHERE id = 's0001' FOR UPDATE"))
                # The claim does not wait for it: it takes what is free.
                async with asyncio.timeout(30):
                    got = await a.store.claim_due(clock.now(), "a", 10)
                assert [c.schedule.id for c in got] == ["s0002"]
                # Recording s0001's outcome waits for the schedule before touching the firing.
                outcome = Firing("s0001", START + MINUTE, FiringOutcome.STARTED, "r1", clock.now())
                recording = asyncio.create_task(a.store.record([outcome]))
                database = pg_url.rsplit("/", 1)[1]
                async with asyncio.timeout(30):
                    while not await _waiting_on_a_lock(other, database):  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                # The firing row is free: the recording transaction waits holding nothing of it.
                await other.execute(
                    text(
                        "SELECT 1 FROM schedule_firings WHERE schedule_id = 's0001' "
                        "FOR UPDATE NOWAIT"
                    )
                )
                await other.rollback()
                assert not recording.done()
                await holder.rollback()
                await recording
        finally:
            await engine.dispose()
        [firing] = await a.store.firings("s0001", 10)
        assert (firing.outcome, firing.run_id) == (FiringOutcome.STARTED, "r1")


# -- the timer's passes -------------------------------------------------------------------------


class SpyStore(SqlScheduleStore):
    """Counts the schedules each read returns; `gate`, when set, holds `claim_due` until set."""

    def __init__(self, *engines: object) -> None:
        super().__init__(*engines)  # type: ignore[arg-type]
        self.read: Counter[str] = Counter()
        self.inside = self.most_inside = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def get(self, schedule_id: str) -> Schedule:
        self.read["get"] += 1
        return await super().get(schedule_id)

    async def list_page(self, after_id: str = "", limit: int = 50) -> list[Schedule]:
        page = await super().list_page(after_id, limit)
        self.read["list_page"] += len(page)
        return page

    async def claim_due(
        self, now: datetime, scheduler_id: str, limit: int, schedule_id: str = ""
    ) -> list[Claimed]:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        self.entered.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            claimed = await super().claim_due(now, scheduler_id, limit, schedule_id)
        finally:
            self.inside -= 1
        self.read["claim_due"] += len(claimed)
        return claimed


async def test_a_pass_reads_only_the_due_schedules_and_sees_other_replicas_changes(
    scheduler_db_url: str,
) -> None:
    async with open_replicas(scheduler_db_url, store=SpyStore) as (clock, (a, b)):
        spy = a.store
        assert isinstance(spy, SpyStore)
        await create_fleet(b.ops, 200)  # created through the other replica
        assert await a.timer.sync() == 0
        assert a.timer.next_due == START + MINUTE
        assert sum(spy.read.values()) == 0  # 200 schedules, none due: none read
        # A change through the other replica: one schedule now ticks at 9:45:30 (first).
        faster = replace(every_minute(7), interval=timedelta(seconds=30))
        await b.ops.update("s0007", faster, {"interval"})
        await a.timer.sync()
        assert a.timer.next_due == START + timedelta(seconds=30)
        clock.set(START + timedelta(seconds=30))
        assert await a.timer.sync() == 1
        assert spy.read == {"claim_due": 1}
        [firing] = await a.store.firings("s0007", 10)
        assert (firing.nominal_time, firing.scheduler_id) == (START + timedelta(seconds=30), "a")


async def test_passes_never_overlap(scheduler_db_url: str) -> None:
    async with open_replicas(scheduler_db_url, count=1, store=SpyStore) as (clock, (a,)):
        spy = a.store
        assert isinstance(spy, SpyStore)
        await create_fleet(a.ops, 50)
        clock.set(START + MINUTE)
        spy.gate = asyncio.Event()
        first = asyncio.create_task(a.timer.sync())
        await spy.entered.wait()
        second = asyncio.create_task(a.timer.sync())
        await a.timer.start()  # the loop's own first pass also asks for the lock
        for _ in range(20):
            await asyncio.sleep(0)  # let the others run up to where they wait
        assert (spy.inside, a.timer.passes) == (1, 1)
        spy.gate.set()
        assert await first == 50
        assert await second == 0
        await a.timer.stop()
        assert spy.most_inside == 1
        assert a.timer.passes >= 3


async def test_a_tick_recorded_by_an_older_replica_is_not_fired_again(
    replicas: tuple[ManualClock, list[Replica]],
) -> None:
    # During a rolling upgrade an older replica records firings without moving `last_nominal`.
    clock, (a, _b) = replicas
    await create_fleet(a.ops, 3)
    clock.set(START + MINUTE)
    engine = create_async_engine(async_url(a.runs.url))
    try:
        async with engine.begin() as conn:
            row = firing_row("s0001", START + MINUTE, FiringOutcome.STARTED, "old", clock.now())
            await conn.execute(firings_table.insert(), [row])
    finally:
        await engine.dispose()
    assert await a.timer.sync() == 0  # the claim conflicted: caught up from the firings
    assert await a.timer.sync() == 3
    firings = await all_firings(a.runs.url)
    assert Counter(schedule_id for schedule_id, *_ in firings) == {
        "s0000": 1,
        "s0001": 1,
        "s0002": 1,
    }
    assert {s for s_id, _n, _o, s in firings if s_id == "s0001"} == {"old"}


class CountingStore(SqlScheduleStore):
    """Counts the calls of the timer's two reads."""

    def __init__(self, *engines: object) -> None:
        super().__init__(*engines)  # type: ignore[arg-type]
        self.calls: Counter[str] = Counter()

    async def claim_due(
        self, now: datetime, scheduler_id: str, limit: int, schedule_id: str = ""
    ) -> list[Claimed]:
        self.calls["claim_due"] += 1
        return await super().claim_due(now, scheduler_id, limit, schedule_id)

    async def next_due(self) -> datetime | None:
        self.calls["next_due"] += 1
        return await super().next_due()


async def test_a_pass_with_nothing_due_or_changed_only_reads_the_next_due_time(
    scheduler_db_url: str,
) -> None:
    async with open_replicas(scheduler_db_url, store=CountingStore) as (clock, (a, b)):
        spy = a.store
        assert isinstance(spy, CountingStore)
        await create_fleet(b.ops, 3)
        assert await a.timer.sync() == 0  # the first pass claims: nothing is due
        spy.calls.clear()
        for _ in range(3):
            assert await a.timer.sync() == 0  # woken by the poll: one read, no claim
        assert spy.calls == {"next_due": 3}
        clock.set(START + MINUTE)  # due by the time read last
        assert await a.timer.sync() == 3
        spy.calls.clear()
        # A change through b that makes a schedule due before the known time: a's poll pass
        # sees it in the one value it reads, and claims.
        await b.ops.update(
            "s0001", replace(every_minute(1), interval=timedelta(seconds=30)), {"interval"}
        )
        clock.set(START + MINUTE + timedelta(seconds=30))
        assert await a.timer.sync() == 1
        assert spy.calls == {"next_due": 2, "claim_due": 1}
        spy.calls.clear()
        a.timer.changed()  # told of a change (by this process or a notice): the pass claims
        assert await a.timer.sync() == 0
        assert spy.calls == {"claim_due": 1, "next_due": 1}


async def test_the_poll_is_ten_times_longer_while_notices_arrive(scheduler_db_url: str) -> None:
    async with open_replicas(scheduler_db_url, count=1) as (_clock, (a,)):
        live = ScheduleTimer(a.store, a.firer, a.timer.clock, a.timer.poll, live=lambda: True)
        assert a.timer._delay(0) == 2.0  # no schedule: the poll
        assert live._delay(0) == 2.0 * LIVE_POLL_EVERY
