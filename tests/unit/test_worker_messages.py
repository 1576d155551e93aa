"""Worker protocol messages built from domain values, and the reconnect backoff."""

from __future__ import annotations

import pytest

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import worker_service_pb2 as pb
from crawler_service.worker import messages as msg
from crawler_service.worker.connection import Backoff
from crawler_service.worker.runner import AttemptError, AttemptKey, AttemptOutcome, StepOutcome

KEY = AttemptKey("run-1", 3)


def test_hello_lists_in_flight_attempts() -> None:
    request = msg.hello("crawler-a", 4, [KEY], "1.2.3")

    hello = request.hello
    assert (hello.worker_id, hello.slots, hello.version) == ("crawler-a", 4, "1.2.3")
    assert hello.protocol_version == msg.PROTOCOL_VERSION == 1
    assert [msg.key_from_pb(ref) for ref in hello.in_flight] == [KEY]


def test_step_finished_carries_the_output() -> None:
    request = msg.step_finished(KEY, "fetch", StepOutcome.SUCCEEDED, {"prs": 2, "repo": "a/b"}, "")

    finished = request.step_report.finished
    assert msg.key_from_pb(request.step_report.ref) == KEY
    assert finished.state == runs_pb2.STEP_STATE_SUCCEEDED
    assert msg.output_from_struct(finished.output) == {"prs": 2, "repo": "a/b"}


def test_failed_result_carries_the_error() -> None:
    error = AttemptError("TRANSIENT", "db locked", retryable=True)

    result = msg.result(KEY, AttemptOutcome.FAILED, error=error).result

    assert result.outcome == pb.ATTEMPT_OUTCOME_FAILED
    assert (result.error.code, result.error.message, result.error.retryable) == (
        "TRANSIENT",
        "db locked",
        True,
    )
    assert not result.HasField("output")


def test_output_round_trip_gives_integers_back() -> None:
    output = {"count": 3, "ratio": 0.5, "nested": {"ids": [1, 2]}, "none": None, "ok": True}

    assert msg.output_from_struct(msg.struct_from(output)) == output
    assert isinstance(msg.output_from_struct(msg.struct_from(output))["count"], int)


def test_completed_outputs_by_step_name() -> None:
    assignment = pb.Assignment()
    assignment.completed_steps.add(name="fetch", output=msg.struct_from({"prs": 5}))

    assert msg.completed_outputs(assignment) == {"fetch": {"prs": 5}}


def test_non_json_output_is_rejected() -> None:
    with pytest.raises((ValueError, TypeError)):
        msg.struct_from({"when": object()})


def test_backoff_doubles_with_jitter_up_to_the_maximum() -> None:
    backoff = Backoff(0.1, 0.4)

    delays = [backoff.next() for _ in range(5)]

    for delay, ceiling in zip(delays, [0.1, 0.2, 0.4, 0.4, 0.4], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next() <= 0.1


def test_reports_leave_the_crawler_without_url_credentials() -> None:
    leaky = "GET https://x-access-token:ghp_Leaked000@ghe.example/api/v3/repos/o/r: 502"
    error = AttemptError("GITHUB_UNAVAILABLE", leaky, retryable=True)

    failed = msg.result(KEY, AttemptOutcome.FAILED, {"failed": [{"error": leaky}]}, error).result
    finished = msg.step_finished(KEY, "fetch", StepOutcome.FAILED, {"e": leaky}, leaky)
    progress = msg.step_progress(KEY, "fetch", 1, 2, leaky)

    texts = [
        failed.error.message,
        str(msg.output_from_struct(failed.output)),
        finished.step_report.finished.message,
        str(msg.output_from_struct(finished.step_report.finished.output)),
        progress.step_report.progress.message,
    ]
    for text in texts:
        assert "ghp_Leaked000" not in text
        assert "https://[redacted]@ghe.example/api/v3/repos/o/r" in text


def test_a_hand_back_carries_when_to_dispatch_the_run_again() -> None:
    from datetime import timedelta

    from scheduler_service.api.worker_messages import MAX_RETRY_AFTER, result_from_pb
    from scheduler_service.runs.model import Outcome

    busy = AttemptError("REPOSITORY_BUSY", "another run", retryable=True, retry_after=15.0)
    released = msg.result(KEY, AttemptOutcome.RELEASED, error=busy).result
    failed = msg.result(KEY, AttemptOutcome.FAILED, error=busy).result

    assert released.retry_after.ToTimedelta() == timedelta(seconds=15)
    assert not failed.HasField("retry_after")
    assert result_from_pb(released).retry_after == timedelta(seconds=15)
    assert result_from_pb(released).outcome is Outcome.RELEASED
    # A crawler cannot park a run for longer than a day.
    released.retry_after.FromTimedelta(timedelta(days=30))
    assert result_from_pb(released).retry_after == MAX_RETRY_AFTER
