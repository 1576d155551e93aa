"""The run RPCs of SchedulerService: malformed-but-parseable input is INVALID_ARGUMENT with a
BadRequest naming the field, never INTERNAL — on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from tests.support.cluster import Cluster, cluster
from tests.support.rpc_errors import details

CRAWL = runs_pb2.CrawlJob(repositories=["a/b"])
FAR = timestamp_pb2.Timestamp(seconds=10**12)


@pytest.fixture
async def c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(tmp_path, db=scheduler_db_url) as running:
        yield running


def _naive_token() -> str:
    raw = json.dumps({"c": "2026-01-01T00:00:00", "i": "run_x"}).encode()
    return base64.urlsafe_b64encode(raw).decode()


async def _violations(call: Any) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    bad = details(info.value)["BadRequest"]
    return [v.field for v in bad.field_violations]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"deadline": duration_pb2.Duration(seconds=10**15)}, ["deadline"]),
        ({"nominal_time": FAR}, ["nominal_time"]),
        ({"concurrency_key": "k\x00"}, ["concurrency_key"]),
        ({"request_id": "r\x00"}, ["request_id"]),
        ({"labels": {"team": "a\x00"}}, ["labels[team]"]),
        ({"schedule_id": "s\x00"}, ["schedule_id"]),
    ],
)
async def test_trigger_run_bad_values(
    c: Cluster, fields: dict[str, object], expected: list[str]
) -> None:
    request = spb.TriggerRunRequest(crawl=CRAWL, **fields)  # type: ignore[arg-type]
    assert await _violations(c.stub.TriggerRun(request)) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"page_token": _naive_token()}, ["page_token"]),
        ({"created_after": FAR}, ["created_after"]),
        ({"created_before": FAR}, ["created_before"]),
        ({"concurrency_key": "k\x00"}, ["concurrency_key"]),
        ({"labels": {"team": "a\x00"}}, ["labels[team]"]),
    ],
)
async def test_list_runs_bad_values(
    c: Cluster, fields: dict[str, object], expected: list[str]
) -> None:
    request = spb.ListRunsRequest(**fields)  # type: ignore[arg-type]
    assert await _violations(c.stub.ListRuns(request)) == expected


async def test_run_id_with_nul_is_invalid(c: Cluster) -> None:
    request = spb.GetRunRequest(run_id="run_\x00")
    assert await _violations(c.stub.GetRun(request)) == ["run_id"]
