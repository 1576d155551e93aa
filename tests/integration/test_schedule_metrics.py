"""The schedule firings counter is served on the scheduler's metrics endpoint and counts each
firing this scheduler settled, by outcome."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest
from google.protobuf import duration_pb2
from prometheus_client.parser import text_string_to_metric_families

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1 import schedules_pb2 as sch
from tests.support.cluster import Cluster, cluster

OUTCOMES = {
    sch.FIRING_OUTCOME_STARTED: "started",
    sch.FIRING_OUTCOME_QUEUED: "queued",
    sch.FIRING_OUTCOME_SKIPPED: "skipped",
    sch.FIRING_OUTCOME_MISSED: "missed",
}


async def firings(c: Cluster) -> list[sch.ScheduleFiring]:
    request = spb.GetScheduleRequest(schedule_id="every-second", firing_count=500)
    return list((await c.stub.GetSchedule(request)).recent_firings)


async def until_settled(c: Cluster, enough: int) -> list[sch.ScheduleFiring]:
    """Wait until at least `enough` firings exist and every one has its outcome."""
    async with asyncio.timeout(30):
        # The firings are written by the scheduler's timer task: there is no event to wait on.
        while True:
            seen = await firings(c)
            settled = all(f.outcome != sch.FIRING_OUTCOME_UNSPECIFIED for f in seen)
            if len(seen) >= enough and settled:
                return seen
            await asyncio.sleep(0.05)


async def scrape(c: Cluster) -> dict[str, float]:
    assert c.scheduler.metrics_server is not None
    async with httpx.AsyncClient() as http:
        page = (await http.get(c.scheduler.metrics_server.url)).text
    assert "# TYPE ghpulse_schedule_firings_total counter" in page
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == "ghpulse_schedule_firings_total"
    }


async def test_each_settled_firing_is_counted_by_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> None:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(
        tmp_path, db=scheduler_db_url, metrics_listen="127.0.0.1:0", schedule_poll=0.2
    ) as c:
        assert set((await scrape(c)).values()) <= {0.0}
        schedule = sch.Schedule(
            interval=duration_pb2.Duration(seconds=1),
            template=sch.ScheduleTemplate(crawl=runs_pb2.CrawlJob(repositories=["octo/one"])),
        )
        await c.stub.CreateSchedule(
            spb.CreateScheduleRequest(schedule_id="every-second", schedule=schedule)
        )
        await until_settled(c, 2)
        await c.stub.PauseSchedule(spb.PauseScheduleRequest(schedule_id="every-second"))
        # A tick the timer was settling as the pause landed may still appear: read the counter
        # between two identical reads of the firings.
        while True:
            settled = await until_settled(c, 2)
            counted = await scrape(c)
            if await firings(c) == settled:
                break
    expected = Counter(OUTCOMES[f.outcome] for f in settled)
    # No crawler: the first tick starts a run, the later ones are skipped (or missed, if late).
    assert expected["started"] == 1 and expected["skipped"] + expected["missed"] >= 1
    assert {o: v for o, v in counted.items() if v} == {o: float(n) for o, n in expected.items()}
