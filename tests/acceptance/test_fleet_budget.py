"""One GitHub budget for a fleet of four `ghpulse crawler` processes on one token, sharing a
PostgreSQL crawler database, against the fake GitHub with a 600 requests/hour limit:

- no request reaches GitHub once the shared row says the budget is spent, until its reset, and
  GitHub never has to refuse one for the primary limit;
- after a secondary limit with `retry-after`, no crawler sends before it has passed;
- GHPULSE_GITHUB_FLEET_CONCURRENCY bounds the requests in flight across the four processes.

"Once" is exact, not a wall-clock margin: triggers log every change of the fleet's slots and of
the budget row, and the fake marks every request's arrival, all in one database sequence. A request
sent after the row says stop is one that arrives after that change without holding a slot taken
before it (a request takes its slot before it reads the row, and frees it after the answer).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from crawler_service.data.migrations import upgrade
from ghpulse.testing.fake_github import Dataset, FakeGitHub, RepoData, RequestRecord
from tests.support import postgres
from tests.support.github import sample_dataset
from tests.support.processes import Processes

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TOKEN = "ghp_fleet_budget_token_0123456789"
OWNER = "fleet-owner"
CRAWLERS, PER_CRAWLER, FLEET = 4, 4, 4
REPOSITORIES = [f"fleet/r{i}" for i in range(CRAWLERS)]
PRS = 30
#: The hour's last requests when the crawls start, and seconds until the budget resets.
STARTING_BUDGET, RESET_IN = 150, 25
RETRY_AFTER = 5
#: Where a take the log never saw freed ends (held when the crawl ended).
HELD = 2**63
TERMINAL = {runs_pb2.RUN_STATE_SUCCEEDED, runs_pb2.RUN_STATE_FAILED, runs_pb2.RUN_STATE_CANCELLED}


def fleet_dataset() -> Dataset:
    """Four repositories of 30 pull requests each (copies of the sample's `infra`)."""
    source = sample_dataset().require("ghpulse-demo/infra")
    numbers = sorted(source.pulls)[:PRS]
    copies = []
    for full_name in REPOSITORIES:
        owner, name = full_name.split("/")
        repository = copy.deepcopy(source.repository)
        repository.update(full_name=full_name, name=name)
        repository["owner"] = {**repository["owner"], "login": owner}
        copies.append(
            RepoData(
                repository,
                pulls={n: copy.deepcopy(source.pulls[n]) for n in numbers},
                reviews={n: copy.deepcopy(source.reviews.get(n, [])) for n in numbers},
                commits={n: copy.deepcopy(source.commits.get(n, [])) for n in numbers},
                releases=copy.deepcopy(source.releases),
            )
        )
    return Dataset(copies)


#: The log of slot and budget changes; `nextval('fleet_order')` also marks the fake's arrivals.
LOG_SQL = """
CREATE SEQUENCE fleet_order;
CREATE TABLE fleet_log (
    seq bigint PRIMARY KEY DEFAULT nextval('fleet_order'),
    owner text NOT NULL,
    slot integer,
    holder text,
    remaining integer,
    reset_at double precision,
    paused_until double precision
);
CREATE FUNCTION fleet_slot_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fleet_log (owner, slot, holder) VALUES (NEW.owner, NEW.slot, NEW.holder);
    RETURN NULL;
END $$;
CREATE TRIGGER fleet_slot_logged AFTER UPDATE ON github_slots
    FOR EACH ROW EXECUTE FUNCTION fleet_slot_logged();
CREATE FUNCTION fleet_budget_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fleet_log (owner, remaining, reset_at, paused_until)
        VALUES (NEW.owner, NEW.remaining, NEW.reset_at, NEW.paused_until);
    RETURN NULL;
END $$;
CREATE TRIGGER fleet_budget_logged AFTER INSERT OR UPDATE ON github_budgets
    FOR EACH ROW EXECUTE FUNCTION fleet_budget_logged();
"""


@dataclass(frozen=True)
class Holding:
    """One take of a fleet slot (one request), from `taken` until `freed` (log positions)."""

    taken: int
    freed: int


@dataclass(frozen=True)
class FleetLog:
    """The owner's slot takes, and its budget row's states by log position."""

    holdings: list[Holding]
    budget: list[tuple[int, int | None, float | None, float | None]]

    def spent(self, reset_at: float) -> int | None:
        """Where the row first said the budget is spent until `reset_at`."""
        return next(
            (seq for seq, left, reset, _ in self.budget if (left, reset) == (0, reset_at)), None
        )

    def paused(self) -> tuple[int, float] | None:
        """Where the row first held a secondary pause, and its end."""
        return next(((seq, until) for seq, *_, until in self.budget if until is not None), None)


def read_log(url: str) -> FleetLog:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT seq, slot, holder, remaining, reset_at, paused_until FROM fleet_log"
            " WHERE owner = %s ORDER BY seq",
            (OWNER,),
        ).fetchall()
    holdings: list[Holding] = []
    taken: dict[int, int] = {}
    for seq, slot, holder, *_state in (row for row in rows if row[1] is not None):
        # A slot's next change ends its take: the release, or a take after it expired.
        if slot in taken:
            holdings.append(Holding(taken.pop(slot), seq))
        if holder is not None:
            taken[slot] = seq
    holdings += [Holding(seq, HELD) for seq in taken.values()]
    budget = [(row[0], *row[3:]) for row in rows if row[1] is None]
    return FleetLog(holdings, budget)


def sent_after(
    requests: list[RequestRecord], holdings: list[Holding], since: int, until: float
) -> list[RequestRecord]:
    """The requests that arrived after log position `since` and before `until` (the fake's clock)
    although no slot taken before `since` accounts for them. A request that passed the checks
    before `since` (and so was already on its way) took its slot before then and holds it until
    after its answer; each take accounts for one request. `GET /user` is left out: the crawlers
    send it before they know their owner, so before any slot or shared row."""
    open_takes = sorted((h for h in holdings if h.taken < since < h.freed), key=lambda h: h.freed)
    late = [
        r
        for r in sorted(requests, key=lambda r: r.mark or 0)
        if (r.mark or 0) > since and r.at < until and r.path != "/user"
    ]
    unaccounted = []
    for request in late:
        # The take freed soonest that is still held at this arrival (greedy, so optimal).
        take = next((h for h in open_takes if h.freed > (request.mark or 0)), None)
        if take is None:
            unaccounted.append(request)
        else:
            open_takes.remove(take)
    return unaccounted


def most_in_flight(requests: list[RequestRecord]) -> int:
    """The most GitHub requests the fake answered at once (`GET /user`, which the crawlers send
    before they know their owner and so before any slot, left out)."""
    edges = sorted(
        [(r.at, 1) for r in requests if r.path != "/user"]
        + [(r.done, -1) for r in requests if r.path != "/user"]
    )
    current = highest = 0
    for _moment, step in edges:
        current += step
        highest = max(highest, current)
    return highest


@pytest.fixture
def crawler_db() -> Iterator[str]:
    problem = postgres.reachable()
    if problem is not None:
        pytest.skip(problem)
    with postgres.fresh("ghp_fleet") as url:
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(LOG_SQL)
        yield url


@pytest.fixture
def arrivals(crawler_db: str) -> Iterator[Any]:
    """The fake's `mark`: the log sequence's next value (one connection, thread-safe)."""
    with psycopg.connect(crawler_db, autocommit=True) as conn:

        def mark() -> int:
            row = conn.execute("SELECT nextval('fleet_order')").fetchone()
            assert row is not None
            return int(row[0])

        yield mark


def test_four_crawlers_share_one_budget(
    processes: Processes, crawler_db: str, arrivals: Any
) -> None:
    with FakeGitHub(
        fleet_dataset(),
        rate_limit=600,
        token=TOKEN,
        user_login=OWNER,
        latency=0.05,
        mark=arrivals,
    ) as fake:
        processes.scheduler()
        env = {
            "GHPULSE_CRAWLER_DB": crawler_db,
            # PostgreSQL is shared with other tests: a small pool per crawler (README, Connection
            # budget) is enough for four requests at once.
            "GHPULSE_CRAWLER_DB_POOL_SIZE": "2",
            "GHPULSE_CRAWLER_DB_MAX_OVERFLOW": "3",
            "GHPULSE_CRAWLER_MIGRATE": "false",
            "GHPULSE_CRAWLER_PLUGINS": "",
            "GHPULSE_CRAWLER_SLOTS": "1",
            "GHPULSE_GITHUB_API_URL": fake.url,
            "GHPULSE_GITHUB_API": "rest",
            "GITHUB_TOKEN": TOKEN,
            "GHPULSE_GITHUB_CONCURRENCY": str(PER_CRAWLER),
            "GHPULSE_GITHUB_FLEET_CONCURRENCY": str(FLEET),
        }
        for n in range(CRAWLERS):
            processes.crawler(f"fleet-{n}", **env)
        fake.budget.set(STARTING_BUDGET, reset_in=RESET_IN)
        reset_at = float(fake.budget.reset)
        runs = _trigger_all(processes.scheduler_addr)
        # While the fleet waits for the reset, the next answer it gets will be a secondary
        # limit: the first pull request's commits asked for after the reset.
        time.sleep(max(0.0, reset_at - 3 - time.time()))
        fake.faults.secondary_limit(r"/commits$", retry_after=RETRY_AFTER)
        finished = _wait_all(processes.scheduler_addr, runs)
        requests = fake.requests
    log = read_log(crawler_db)

    assert [run.state for run in finished] == [runs_pb2.RUN_STATE_SUCCEEDED] * CRAWLERS
    outputs: list[dict[str, Any]] = [dict(run.output) for run in finished]
    assert sorted(name for o in outputs for name in o["repositories_fetched"]) == REPOSITORIES
    assert {owner for o in outputs for owner in dict(o["github_owners"]).values()} == {OWNER}
    # One run per crawler (one slot each): the four processes all took part.
    crawlers = [s for s in processes.started if s.command == "crawler"]
    assert all('"attempt.started"' in s.log.read_text() for s in crawlers)

    # Primary: once the shared row said the budget is spent, nothing more was sent until the
    # reset; only requests that had passed the checks before (one per fleet slot at most) can
    # arrive after it. GitHub refuses at most those: the row counts down from GitHub's last
    # answered header, so it can lag GitHub's own count by the requests in flight, never by more.
    spent = log.spent(reset_at)
    assert spent is not None
    assert sent_after(requests, log.holdings, spent, reset_at) == []
    assert len([r for r in requests if r.status == 403 and "commits" not in r.path]) <= FLEET
    assert any(r.at >= reset_at for r in requests)

    # Secondary: once the pause was in the row, nobody sent before it passed (again, only what
    # was already under way), and it lasts GitHub's `retry-after` from the answer that asked.
    paused = log.paused()
    assert paused is not None
    since, until = paused
    refused = [r for r in requests if r.status == 403 and r.path.endswith("/commits")]
    assert refused and until >= refused[0].done + RETRY_AFTER
    assert sent_after(requests, log.holdings, since, until) == []
    assert any(r.at >= until for r in requests)

    # Four crawlers of up to four requests each, never more than four in flight together.
    assert most_in_flight(requests) <= FLEET


def _trigger_all(address: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        stub = SchedulerServiceStub(channel)
        return [
            stub.TriggerRun(
                spb.TriggerRunRequest(crawl=runs_pb2.CrawlJob(repositories=[name]))
            ).run.id
            for name in REPOSITORIES
        ]


def _wait_all(address: str, run_ids: list[str], timeout: float = 180.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = SchedulerServiceStub(channel)
        while True:
            runs = [stub.GetRun(spb.GetRunRequest(run_id=r)).run for r in run_ids]
            if all(run.state in TERMINAL for run in runs) or time.monotonic() > deadline:
                return runs
            time.sleep(0.5)


def test_a_request_sent_after_the_row_said_stop_is_caught() -> None:
    """`sent_after` itself: the row said stop at position 10; two slots were taken before it."""
    holdings = [Holding(3, 12), Holding(5, 20), Holding(11, 15)]

    def arriving(mark: int, path: str = "/repos/o/r/pulls") -> RequestRecord:
        return RequestRecord("GET", path, {}, 200, at=float(mark), mark=mark)

    # Two late arrivals, each under a slot taken before the row said stop: on their way.
    assert sent_after([arriving(8), arriving(11), arriving(13)], holdings, 10, 99.0) == []
    # A third has no such slot left; one arriving after its take was freed has none either.
    third, freed = arriving(14), arriving(21)
    assert sent_after([arriving(11), arriving(13), third], holdings, 10, 99.0) == [third]
    assert sent_after([freed], holdings, 10, 99.0) == [freed]
    # After `until` (the reset, the pause's end) anything goes; `GET /user` is not counted.
    assert sent_after([arriving(30), arriving(14, "/user")], holdings, 10, 25.0) == []
