"""The services as a person drives them with the real grpcurl binary (reflection, no protos)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.support.processes import Processes, grpcurl

pytestmark = pytest.mark.slow


def call(
    address: str, *args: str, data: dict[str, object] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [grpcurl(), "-plaintext", "-max-time", "30"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    return subprocess.run([*command, address, *args], capture_output=True, text=True, timeout=60)


def stream_messages(output: str) -> list[dict[str, Any]]:
    """grpcurl prints one pretty JSON object per streamed message."""
    decoder, messages, index = json.JSONDecoder(), [], 0
    while index < len(output):
        if output[index].isspace():
            index += 1
            continue
        message, index = decoder.raw_decode(output, index)
        messages.append(message)
    return messages


def test_list_trigger_and_watch_with_grpcurl(processes: Processes) -> None:
    processes.scheduler(GHPULSE_LEASE_TTL="5")
    processes.crawler("crawler-a")
    address = processes.scheduler_addr

    listed = call(address, "list")
    assert listed.returncode == 0, listed.stderr
    assert {
        "ghpulse.v1.SchedulerService",
        "ghpulse.v1.WorkerService",
        "grpc.health.v1.Health",
    } <= set(listed.stdout.split())
    described = call(address, "describe", "ghpulse.v1.SchedulerService")
    assert "rpc TriggerRun" in described.stdout and "rpc WatchRun" in described.stdout

    triggered = call(
        address,
        "ghpulse.v1.SchedulerService/TriggerRun",
        data={"crawl": {"repositories": ["test/plain"]}, "labels": {"who": "grpcurl"}},
    )
    assert triggered.returncode == 0, triggered.stderr
    answer = json.loads(triggered.stdout)
    assert answer["disposition"] == "DISPOSITION_CREATED"
    run_id = answer["run"]["id"]

    watched = call(address, "ghpulse.v1.SchedulerService/WatchRun", data={"run_id": run_id})
    assert watched.returncode == 0, watched.stderr
    messages = stream_messages(watched.stdout)
    assert "snapshot" in messages[0]
    events = [m["event"] for m in messages[1:]]
    assert [int(e["seq"]) for e in events] == sorted(int(e["seq"]) for e in events)
    assert any("stepStarted" in e or "step_started" in e for e in events)
    last = events[-1]
    changed = last.get("stateChanged") or last.get("state_changed")
    assert changed["state"] == "RUN_STATE_SUCCEEDED"


def test_bad_input_with_grpcurl_is_invalid_argument(processes: Processes) -> None:
    processes.scheduler()
    result = call(
        processes.scheduler_addr,
        "ghpulse.v1.SchedulerService/TriggerRun",
        data={"recalculate": {"repositories": ["octo/app"]}},
    )
    assert result.returncode != 0
    assert "InvalidArgument" in result.stderr
    assert "recalculate.steps" in result.stderr
    health = call(processes.scheduler_addr, "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout)["status"] == "SERVING"
