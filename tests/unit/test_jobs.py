"""Job specs: each kind's validation, concurrency key, JSON and protobuf forms, and the table that
ties the kinds to the `oneof job` arms, the `JobKind` enum and the stored kind strings."""

from __future__ import annotations

import math

import pytest

from common.errors import InvalidArgument
from common.jobs import (
    MAX_PARAMS_BYTES,
    SPECS,
    BackfillLinksSpec,
    CrawlSpec,
    JobKind,
    JobSpec,
    PluginJobSpec,
    RecalculateSpec,
    default_concurrency_key,
    from_json,
    job_from_pb,
    job_to_pb,
    kind_from_pb,
    kind_to_pb,
    to_json,
    validate,
)
from common.proto.ghpulse.v1 import runs_pb2, schedules_pb2, worker_service_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb

SPECIMENS: list[JobSpec] = [
    CrawlSpec(("octo/a", "octo/b"), "octo", refresh=True),
    CrawlSpec(),
    RecalculateSpec(("octo/a",), "", ("link", "export")),
    BackfillLinksSpec("octo/a"),
    PluginJobSpec("noop"),
    PluginJobSpec(
        "report.weekly", {"n": 3, "ratio": 0.5, "tags": ["a", None], "deep": {"x": True}}
    ),
]
JOB_MESSAGES = [
    spb.TriggerRunRequest,
    runs_pb2.Run,
    worker_service_pb2.Assignment,
    schedules_pb2.ScheduleTemplate,
]


def violations(spec: JobSpec | None) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        validate(spec)
    return {v.field: v.description for v in caught.value.violations}


@pytest.mark.parametrize("message_type", JOB_MESSAGES)
def test_every_oneof_job_has_one_arm_per_kind(message_type) -> None:
    oneof = message_type.DESCRIPTOR.oneofs_by_name["job"]
    arms = {field.name: field.message_type.name for field in oneof.fields}
    assert arms == {kind.value: type(SPECS[kind]().to_pb()).__name__ for kind in JobKind}


def test_every_kind_has_its_enum_value() -> None:
    for kind in JobKind:
        assert kind_from_pb(kind_to_pb(kind)) is kind
    assert kind_from_pb(runs_pb2.JOB_KIND_UNSPECIFIED) is None
    assert kind_from_pb(999) is None
    assert kind_to_pb(JobKind.PLUGIN) == runs_pb2.JOB_KIND_PLUGIN


@pytest.mark.parametrize("message_type", JOB_MESSAGES)
@pytest.mark.parametrize("spec", SPECIMENS, ids=repr)
def test_protobuf_round_trip(spec: JobSpec, message_type) -> None:
    message = message_type()
    job_to_pb(spec, message)
    assert message.WhichOneof("job") == spec.job_kind.value
    assert job_from_pb(message) == spec


@pytest.mark.parametrize("spec", SPECIMENS, ids=repr)
def test_json_round_trip_by_stored_kind(spec: JobSpec) -> None:
    assert from_json(spec.job_kind.value, to_json(spec)) == spec


def test_stored_kind_strings_are_unchanged() -> None:
    assert [kind.value for kind in JobKind] == ["crawl", "recalculate", "backfill_links", "plugin"]
    assert from_json("crawl", {"repositories": ["o/r"]}) == CrawlSpec(("o/r",))
    assert to_json(BackfillLinksSpec("o/r")) == {"repository": "o/r"}


def test_no_job_set() -> None:
    assert job_from_pb(spb.TriggerRunRequest()) is None
    assert violations(None) == {"job": "set one job: crawl, recalculate, backfill_links or plugin"}


def test_built_in_jobs_are_normalized_and_validated() -> None:
    spec = validate(CrawlSpec((" octo/a ", "octo/a", "octo/b"), " octo "))
    assert spec == CrawlSpec(("octo/a", "octo/b"), "octo")
    assert set(violations(CrawlSpec(("not a repo",)))) == {"crawl.repositories[0]"}
    assert set(violations(RecalculateSpec(("o/r",), steps=("fetch",)))) == {"recalculate.steps"}
    assert set(violations(BackfillLinksSpec("x"))) == {"backfill_links.repository"}


def test_concurrency_keys() -> None:
    assert default_concurrency_key(CrawlSpec(("Octo/B", "octo/a"), refresh=True)) == (
        "crawl:octo/a,octo/b:refresh"
    )
    assert default_concurrency_key(RecalculateSpec(organization="Octo")) == "recalculate:org:octo"
    assert default_concurrency_key(BackfillLinksSpec("Octo/A")) == "links:octo/a"
    assert default_concurrency_key(PluginJobSpec("noop")) == "plugin:noop"
    same = PluginJobSpec("noop", {"a": 1, "b": 2}).concurrency_key()
    assert same == PluginJobSpec("noop", {"b": 2, "a": 1}).concurrency_key()
    assert same.startswith("plugin:noop:")
    assert same != PluginJobSpec("noop", {"a": 2, "b": 2}).concurrency_key()


def test_plugin_kind_is_a_name_not_a_built_in_kind() -> None:
    assert validate(PluginJobSpec(" noop ")) == PluginJobSpec("noop")
    assert validate(PluginJobSpec("a" + "b" * 62)).kind.startswith("a")
    for bad in ("", "Noop", "1st", "no op", "a" * 64, "crawl", "plugin", "backfill_links"):
        assert set(violations(PluginJobSpec(bad))) == {"plugin.kind"}, bad


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"x": math.nan}, "finite"),
        ({"x": [1, math.inf]}, "finite"),
        ({"x": "a\x00b"}, "NUL"),
        ({"a\x00": 1}, "NUL"),
        ({"x": "y" * MAX_PARAMS_BYTES}, "bytes"),
        ({"x": object()}, "not JSON"),
    ],
)
def test_plugin_params_are_bounded_json(params, problem) -> None:
    assert problem in violations(PluginJobSpec("noop", params))["plugin.params"]


def test_plugin_params_survive_protobuf_non_finite_numbers_included() -> None:
    message = spb.TriggerRunRequest(plugin=runs_pb2.PluginJob(kind="noop"))
    message.plugin.params.update({"n": 2, "x": math.inf})
    spec = job_from_pb(message)
    assert spec == PluginJobSpec("noop", {"n": 2, "x": math.inf})
    assert isinstance(spec, PluginJobSpec) and isinstance(spec.params["n"], int)
    assert set(violations(spec)) == {"plugin.params"}


def test_the_import_paths_of_plugins_and_users() -> None:
    import common.jobs
    import ghpulse

    for name in ("CrawlSpec", "RecalculateSpec", "BackfillLinksSpec", "JobKind", "JobSpec"):
        assert getattr(ghpulse, name) is getattr(common.jobs, name)
    assert ghpulse.PluginJobSpec is PluginJobSpec
    for name in ("validate", "default_concurrency_key", "to_json", "from_json"):
        assert callable(getattr(common.jobs, name))
