"""CLI helpers without servers: error lines, labels, durations, exit codes, tables."""

from __future__ import annotations

import json
from datetime import timedelta

import grpc
import pytest
import typer
from rich.console import Console

from common.errors import FieldViolation, InvalidArgument, NotFound
from common.grpc_errors import to_status
from common.proto.ghpulse.v1 import pull_request_service_pb2 as ppb
from common.proto.ghpulse.v1 import runs_pb2
from ghpulse.cli.output import describe_rpc_error, human_duration, to_json
from ghpulse.cli.progress import exit_code
from ghpulse.cli.runs import parse_labels, parse_params
from ghpulse.cli.schedules import parse_duration
from ghpulse.cli.tables import job_name, stats_table, targets


def error_from(exc: Exception) -> grpc.aio.AioRpcError:
    status = to_status(exc)  # type: ignore[arg-type]
    trailing = grpc.aio.Metadata(*status.trailing_metadata)
    return grpc.aio.AioRpcError(
        status.code, grpc.aio.Metadata(), trailing, details=status.details, debug_error_string=None
    )


def test_error_line_carries_code_message_and_details() -> None:
    invalid = InvalidArgument([FieldViolation("crawl.repositories[0]", "not owner/name")])
    missing = NotFound("run r1 not found", run_id="r1")

    assert describe_rpc_error(error_from(invalid)) == (
        "error: INVALID_ARGUMENT: crawl.repositories[0]: not owner/name "
        "(reason=INVALID_ARGUMENT; invalid fields: crawl.repositories[0]: not owner/name)"
    )
    assert describe_rpc_error(error_from(missing)) == (
        "error: NOT_FOUND: run r1 not found (reason=NOT_FOUND run_id=r1)"
    )


def test_error_line_without_details() -> None:
    plain = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details="down",
        debug_error_string=None,
    )

    assert describe_rpc_error(plain) == "error: UNAVAILABLE: down"


def test_labels_parse_and_reject_malformed_items() -> None:
    assert parse_labels(["team=core", " env = dev ", "empty="]) == {
        "team": "core", "env": "dev", "empty": "",
    }  # fmt: skip
    with pytest.raises(typer.Exit) as caught:
        parse_labels(["novalue"])
    assert caught.value.exit_code == 2


def test_plugin_params_parse_as_json_or_text() -> None:
    assert parse_params(["n=3", "ok=true", "who=me", "list=[1]", "raw={"]) == {
        "n": 3, "ok": True, "who": "me", "list": [1], "raw": "{",
    }  # fmt: skip
    with pytest.raises(typer.Exit) as caught:
        parse_params(["=1"])
    assert caught.value.exit_code == 2


def test_plugin_jobs_in_tables() -> None:
    run = runs_pb2.Run(plugin=runs_pb2.PluginJob(kind="noop"))
    run.plugin.params.update({"n": 3})

    assert (job_name(run), targets(run)) == ("plugin:noop", '{"n": 3}')
    assert (job_name(runs_pb2.Run()), targets(runs_pb2.Run())) == ("-", "")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (65, "1m05s"), (3700, "1h01m"), (90000, "1d1h"), (0, "0s")],
)
def test_human_durations(seconds: int, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


def test_schedule_durations() -> None:
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    with pytest.raises(typer.Exit):
        parse_duration("soon")


def test_exit_codes_of_run_states() -> None:
    states = (
        runs_pb2.RUN_STATE_SUCCEEDED,
        runs_pb2.RUN_STATE_FAILED,
        runs_pb2.RUN_STATE_CANCELLED,
        runs_pb2.RUN_STATE_RUNNING,
    )
    assert [exit_code(s) for s in states] == [0, 3, 4, 1]


def test_json_is_the_canonical_protobuf_mapping() -> None:
    run = runs_pb2.Run(id="r", state=runs_pb2.RUN_STATE_RUNNING, last_seq=7)

    assert json.loads(to_json(run)) == {"id": "r", "state": "RUN_STATE_RUNNING", "last_seq": "7"}


def test_stats_table_shows_counts_sizes_and_percentiles() -> None:
    stats = ppb.GetRepositoryStatsResponse(
        repository="o/r", total=3,
        by_state=[ppb.StateCount(state=ppb.PULL_REQUEST_STATE_MERGED, count=2),
                  ppb.StateCount(state=ppb.PULL_REQUEST_STATE_OPEN, count=1)],
        by_size_class=[ppb.SizeClassCount(size_class=ppb.SIZE_CLASS_S, count=3)],
    )  # fmt: skip
    stats.review_time.count = 2
    stats.review_time.p50.FromTimedelta(timedelta(hours=2))
    stats.review_time.p90.FromTimedelta(timedelta(days=1, hours=3))
    console = Console(width=200, record=True)

    console.print(stats_table([stats]))
    text = console.export_text()

    assert "o/r" in text
    assert "1/2/0" in text
    assert "0/3/0/0/0/0" in text
    assert "2h00m/1d3h" in text
