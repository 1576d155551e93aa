"""Two `ghpulse scheduler` replicas as real processes on one PostgreSQL database, with crawlers and
clients that reach them through one `ipv4:A,B` target (round-robin):

- kill -9 of the replica that holds a crawler's stream and a watch, mid-run: the crawler moves to
  the other replica and re-attaches its attempt (none used up), the watch resumes after its last
  event (no gap, no duplicate) and the run ends there;
- 1,000 triggers over 50 concurrency keys from 32 concurrent clients spread over both replicas:
  every trigger is answered with a run, every run ends, and no snapshot of the database ever
  shows two active runs of one key.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import grpc
import psycopg
import pytest

from common.auth.credentials import ClientCredentials
from common.client.aio import GhpulseClient
from common.client.watch import Backoff
from common.jobs import CrawlSpec
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from tests.support import postgres
from tests.support.following import follow
from tests.support.processes import FAST, Processes, Service, free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
TERMINAL = {runs_pb2.RUN_STATE_SUCCEEDED, runs_pb2.RUN_STATE_FAILED, runs_pb2.RUN_STATE_CANCELLED}
#: Leases and the reconnect grace long enough that a loaded machine never expires one while the
#: crawler moves between replicas (the test waits for events, never for these).
SLOW_LEASES = {"GHPULSE_LEASE_TTL": "30", "GHPULSE_RECONNECT_GRACE": "15"}
TRIGGERS, KEYS, CLIENTS = 1000, 50, 32


class Replicas:
    """Scheduler replicas on one database and crawlers, all reached through `target`."""

    def __init__(self, processes: Processes, url: str) -> None:
        self.processes = processes
        self.url = url
        self.addresses = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
        self.target = "ipv4:" + ",".join(self.addresses)

    def scheduler(self, index: int, **env: str) -> Service:
        values = {
            "GHPULSE_SCHEDULER_LISTEN": self.addresses[index],
            "GHPULSE_SCHEDULER_DB": self.url,
            "GHPULSE_SCHEDULER_ID": f"replica-{'ab'[index]}",
            **env,
        }
        return self._start("scheduler", self.addresses[index], values)

    def crawler(self, name: str, **env: str) -> Service:
        address = f"127.0.0.1:{free_port()}"
        values = {
            "GHPULSE_CRAWLER_LISTEN": address,
            "GHPULSE_CRAWLER_ID": name,
            "GHPULSE_SCHEDULER_ADDR": self.target,
            "GHPULSE_CRAWLER_DB": f"sqlite:///{self.processes.tmp}/{name}.db",
            "GHPULSE_EXPORT_DIR": str(self.processes.tmp / "exports"),
            "GHPULSE_GITHUB_API_URL": "http://127.0.0.1:9",
            "GHPULSE_TEST_GATES": str(self.processes.gates),
            **env,
        }
        return self._start("crawler", address, values)

    def _start(self, command: str, address: str, env: dict[str, str]) -> Service:
        log = self.processes.tmp / f"{command}-{len(self.processes.started)}.log"
        service = Service(command, address, {**FAST, **env}, log)
        self.processes.started.append(service)
        return service.start()


@pytest.fixture
def replicas(processes: Processes, pg_available: None) -> Iterator[Replicas]:
    with postgres.fresh("ghp_replicas_acc") as url:
        yield Replicas(processes, url)
        for service in reversed(processes.started):
            service.kill()


@pytest.mark.timeout(300)
def test_a_replica_killed_mid_run_hands_its_crawler_and_watch_to_the_other(
    replicas: Replicas,
) -> None:
    # Only A is up when the crawler connects and the watch opens: both are on A.
    a = replicas.scheduler(0, **SLOW_LEASES)
    replicas.crawler("crawler-1", GHPULSE_CRAWLER_PLUGINS="tests.support.jobs:register")
    asyncio.run(_killed_mid_run(replicas, a))


async def _killed_mid_run(replicas: Replicas, a: Service) -> None:
    client = GhpulseClient(
        replicas.target, credentials=ClientCredentials(), watch_backoff=Backoff(0.05)
    )
    try:
        triggered = await client.trigger(CrawlSpec(("test/gated",)), max_attempts=1)
        run_id = triggered.run_id
        seen: list[spb.WatchRunResponse] = []
        beta = asyncio.Event()
        watching = asyncio.create_task(follow(client, run_id, seen, beta))
        await beta.wait()
        await asyncio.to_thread(replicas.scheduler, 1, GHPULSE_SCHEDULER_MIGRATE="false")
        a.kill()
        replicas.processes.open_gate(run_id)
        await watching
        final = await client.get_run(run_id)
        workers = await client.workers()
    finally:
        await client.aclose()
    # The attempt went on under replica b: the one attempt allowed was enough.
    assert (final.state, final.attempt) == (runs_pb2.RUN_STATE_SUCCEEDED, 1), final.error
    assert [(w.id, w.replica_id) for w in workers.workers] == [("crawler-1", "replica-b")]
    # A snapshot per connection, every event once and in order.
    snapshots = [m for m in seen if m.HasField("snapshot")]
    assert len(snapshots) == 2
    seqs = [m.event.seq for m in seen if m.HasField("event")]
    assert seqs == list(range(1, len(seqs) + 1))
    assert snapshots[1].snapshot.last_seq >= snapshots[0].snapshot.last_seq
    assert seen[-1].event.state_changed.state == runs_pb2.RUN_STATE_SUCCEEDED


@pytest.mark.timeout(600)
def test_a_thousand_triggers_on_fifty_keys_over_both_replicas(replicas: Replicas) -> None:
    replicas.scheduler(0)
    replicas.scheduler(1, GHPULSE_SCHEDULER_MIGRATE="false")
    for name in ("crawler-1", "crawler-2"):
        replicas.crawler(name, GHPULSE_CRAWLER_PLUGINS="bench.noop_plugin:register")
    answers: list[list[spb.TriggerRunResponse]] = [[] for _ in range(CLIENTS)]
    failures: list[BaseException] = []
    start = threading.Barrier(CLIENTS)

    def client(index: int) -> None:
        # Each client its own channel over both replicas (round-robin per call).
        options = [("grpc.lb_policy_name", "round_robin"), ("grpc.use_local_subchannel_pool", 1)]
        try:
            with grpc.insecure_channel(replicas.target, options=options) as channel:
                stub = SchedulerServiceStub(channel)
                start.wait()
                for call in range(index, TRIGGERS, CLIENTS):
                    answers[index].append(stub.TriggerRun(_request(call), timeout=60))
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    watcher = _ActiveRunsWatcher(replicas.url)
    watcher.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    responses = [answer for per_client in answers for answer in per_client]
    assert len(responses) == TRIGGERS
    with grpc.insecure_channel(replicas.target) as channel:
        runs = _all_runs_ended(SchedulerServiceStub(channel), {r.run.id for r in responses})
    samples, doubles = watcher.stop()
    # Every answer names a run that exists and ended well, on the key it asked for.
    assert {r.run.id for r in responses} == set(runs)
    assert {run.state for run in runs.values()} == {runs_pb2.RUN_STATE_SUCCEEDED}
    assert {run.concurrency_key for run in runs.values()} == {_key(i) for i in range(KEYS)}
    asked = [_key(call) for index in range(CLIENTS) for call in range(index, TRIGGERS, CLIENTS)]
    assert [r.run.concurrency_key for r in responses] == asked
    # No snapshot of the database, taken all along, ever had two pending or running runs of one
    # key (the run's start and end times come from different processes' clocks, taken before
    # their transactions, so they cannot tell).
    assert samples > 0
    assert doubles == []


class _ActiveRunsWatcher(threading.Thread):
    """Reads the runs table over and over, each read one snapshot, for keys with more than one
    active (pending or running) run."""

    QUERY = (
        "SELECT concurrency_key, count(*) FROM runs WHERE state IN ('pending', 'running') "
        "GROUP BY concurrency_key HAVING count(*) > 1"
    )

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self._url = url
        self._stopping = threading.Event()
        self.samples = 0
        self.doubles: list[tuple[str, int]] = []

    def run(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._stopping.is_set():
                self.doubles.extend(conn.execute(self.QUERY).fetchall())
                self.samples += 1

    def stop(self) -> tuple[int, list[tuple[str, int]]]:
        self._stopping.set()
        self.join()
        return self.samples, self.doubles


def _key(i: int) -> str:
    return f"replicas-key-{i % KEYS}"


def _request(i: int) -> spb.TriggerRunRequest:
    """Call `i`: on key i mod 50, joining or queueing behind the key's active run in turn."""
    policy = (spb.CONFLICT_POLICY_JOIN, spb.CONFLICT_POLICY_QUEUE)[(i // KEYS) % 2]
    return spb.TriggerRunRequest(
        plugin=runs_pb2.PluginJob(kind="noop"), concurrency_key=_key(i), on_conflict=policy
    )


def _all_runs_ended(stub: SchedulerServiceStub, ids: set[str]) -> dict[str, runs_pb2.Run]:
    """Every run of `ids`, once each has ended (watched to its end: an exact condition)."""
    runs = {}
    for run_id in sorted(ids):
        for message in stub.WatchRun(spb.WatchRunRequest(run_id=run_id), timeout=300):
            state = (
                message.snapshot.state
                if message.HasField("snapshot")
                else message.event.state_changed.state
            )
            if state in TERMINAL:
                break
        runs[run_id] = stub.GetRun(spb.GetRunRequest(run_id=run_id), timeout=30).run
    return runs
