"""Two real `ghpulse scheduler` processes on one PostgreSQL database fire the same schedule: one
firing and at most one run per nominal time. Seeding from the environment survives restarts
without undoing a pause."""

from __future__ import annotations

import itertools
import subprocess
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import duration_pb2

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1 import schedules_pb2 as sch
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from tests.support import postgres
from tests.support.processes import FAST, Processes, Service, free_port, grpcurl

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
WAIT = 60.0


@pytest.fixture
def pg_url(pg_available: None) -> Iterator[str]:
    with postgres.fresh("ghp_sched_acc") as url:
        yield url


def scheduler(processes: Processes, name: str, db: str, **env: str) -> Service:
    address = f"127.0.0.1:{free_port()}"
    values = {
        **FAST,
        "GHPULSE_SCHEDULER_LISTEN": address,
        "GHPULSE_SCHEDULER_DB": db,
        "GHPULSE_SCHEDULER_ID": name,
        "GHPULSE_SCHEDULE_POLL": "0.3",
        **env,
    }
    service = Service("scheduler", address, values, processes.tmp / f"{name}.log")
    processes.started.append(service)
    return service.start()


def stub(address: str) -> Iterator[SchedulerServiceStub]:
    with grpc.insecure_channel(address) as channel:
        yield SchedulerServiceStub(channel)


def firings(client: SchedulerServiceStub, schedule_id: str) -> list[sch.ScheduleFiring]:
    request = spb.GetScheduleRequest(schedule_id=schedule_id, firing_count=500)
    return list(client.GetSchedule(request, timeout=10).recent_firings)


def settled(claimed: list[sch.ScheduleFiring]) -> list[sch.ScheduleFiring]:
    """The firings that have an outcome (a claimed tick has none until its run is triggered)."""
    return [f for f in claimed if f.outcome != sch.FIRING_OUTCOME_UNSPECIFIED]


def schedule_runs(client: SchedulerServiceStub, schedule_id: str) -> list[runs_pb2.Run]:
    request = spb.ListRunsRequest(trigger=runs_pb2.TRIGGER_SCHEDULE, page_size=500)
    return [r for r in client.ListRuns(request, timeout=10).runs if r.schedule_id == schedule_id]


def test_two_schedulers_fire_each_tick_once(processes: Processes, pg_url: str) -> None:
    a = scheduler(processes, "sched-a", pg_url)
    b = scheduler(processes, "sched-b", pg_url)
    processes.crawler("crawler-1", GHPULSE_SCHEDULER_ADDR=a.address)
    for client in stub(a.address):
        schedule = sch.Schedule(
            interval=duration_pb2.Duration(seconds=1),
            overlap=sch.OVERLAP_POLICY_QUEUE,
            template=sch.ScheduleTemplate(crawl=runs_pb2.CrawlJob(repositories=["test/plain"])),
        )
        client.CreateSchedule(
            spb.CreateScheduleRequest(schedule_id="every-second", schedule=schedule), timeout=10
        )
        deadline = time.monotonic() + WAIT
        while len(settled(firings(client, "every-second"))) < 6:
            assert time.monotonic() < deadline, firings(client, "every-second")
            time.sleep(0.1)  # the ticks come from the processes' own clocks
        client.PauseSchedule(spb.PauseScheduleRequest(schedule_id="every-second"), timeout=10)
        claimed = firings(client, "every-second")
        runs = schedule_runs(client, "every-second")
    assert {f.scheduler_id for f in claimed} <= {"sched-a", "sched-b"}
    # One firing per tick, and every tick has one: none lost between the two processes.
    ticks = sorted(f.nominal_time.ToDatetime() for f in claimed)
    assert {later - earlier for earlier, later in itertools.pairwise(ticks)} == {
        duration_pb2.Duration(seconds=1).ToTimedelta()
    }
    # At most one run per tick; a started tick has its run, a missed one (settled too late on a
    # loaded machine, which is allowed) has none.
    per_tick = Counter(r.nominal_time.ToDatetime() for r in runs)
    assert max(per_tick.values()) == 1, per_tick
    by_outcome = {
        outcome: {f.nominal_time.ToDatetime() for f in claimed if f.outcome == outcome}
        for outcome in (sch.FIRING_OUTCOME_STARTED, sch.FIRING_OUTCOME_MISSED)
    }
    assert by_outcome[sch.FIRING_OUTCOME_STARTED] <= set(per_tick)
    assert not by_outcome[sch.FIRING_OUTCOME_MISSED] & set(per_tick)
    for service in (a, b):
        assert service.stop() == 0


def test_seeding_is_idempotent_across_restarts_and_keeps_a_pause(
    processes: Processes, pg_url: str
) -> None:
    env = {
        "GHPULSE_SCHEDULE_REPOSITORIES": "octo/one, octo/two",
        "GHPULSE_SCHEDULE_ORGANIZATIONS": "acme",
    }
    first = scheduler(processes, "sched-a", pg_url, **env)
    for client in stub(first.address):
        listed = client.ListSchedules(spb.ListSchedulesRequest(), timeout=10).schedules
        assert [s.id for s in listed] == ["config-org-acme", "config-repositories"]
        assert listed[1].cron == "30 * * * *"
        assert not listed[1].template.crawl.refresh
        client.PauseSchedule(
            spb.PauseScheduleRequest(schedule_id="config-repositories"), timeout=10
        )
    assert first.stop() == 0
    second = scheduler(
        processes, "sched-b", pg_url, **{**env, "GHPULSE_SCHEDULE_REPOSITORIES": "octo/three"}
    )
    for client in stub(second.address):
        repos = client.GetSchedule(
            spb.GetScheduleRequest(schedule_id="config-repositories"), timeout=10
        ).schedule
        assert repos.paused
        assert list(repos.template.crawl.repositories) == ["octo/three"]
        listed = client.ListSchedules(spb.ListSchedulesRequest(), timeout=10).schedules
        assert len(listed) == 2
    assert second.stop() == 0


def test_invalid_cron_over_grpcurl(processes: Processes) -> None:
    service = processes.scheduler()
    payload = (
        '{"schedule_id": "bad", "schedule": {"cron": "* * *", "template": '
        '{"crawl": {"repositories": ["octo/one"]}}}}'
    )
    result = subprocess.run(
        [
            grpcurl(),
            "-plaintext",
            "-d",
            payload,
            service.address,
            "ghpulse.v1.SchedulerService/CreateSchedule",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "InvalidArgument" in result.stderr and "schedule.cron" in result.stderr
