"""The table of job kinds, and the operations every layer applies to any job through it.

TriggerRunRequest, Run, Assignment and ScheduleTemplate all carry the same `oneof job`, whose arms
are named after the `JobKind` values; `job_from_pb` and `job_to_pb` read and write it on any of
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.errors import FieldViolation, require
from common.jobs.backfill_links import BackfillLinksSpec
from common.jobs.base import JobKind, JobSpec
from common.jobs.crawl import CrawlSpec
from common.jobs.plugin import PluginJobSpec
from common.jobs.recalculate import RecalculateSpec
from common.proto.ghpulse.v1 import runs_pb2

#: Every kind of job, by `JobKind`: the one list a new built-in kind joins.
SPECS: dict[JobKind, type[JobSpec]] = {
    spec.job_kind: spec for spec in (CrawlSpec, RecalculateSpec, BackfillLinksSpec, PluginJobSpec)
}
assert set(SPECS) == set(JobKind), "every JobKind needs its spec class"
_NAMES = [kind.value for kind in JobKind]
_CHOICES = f"{', '.join(_NAMES[:-1])} or {_NAMES[-1]}"


def missing_job(field: str) -> FieldViolation:
    """The violation of a request that sets no job."""
    return FieldViolation(field, f"set one job: {_CHOICES}")


def validate(spec: JobSpec | None) -> JobSpec:
    """`spec`, normalized (whitespace trimmed, duplicates dropped); raises InvalidArgument."""
    if spec is None:
        require([missing_job("job")])
        raise AssertionError("unreachable")
    return spec.validated()


def default_concurrency_key(spec: JobSpec) -> str:
    """The concurrency key of a run that names none (see each spec's `concurrency_key`)."""
    return spec.concurrency_key()


def to_json(spec: JobSpec) -> dict[str, Any]:
    """The job's parameters as JSON-compatible data (stored with the run, beside its kind)."""
    return spec.to_json()


def from_json(kind: JobKind | str, data: Mapping[str, Any]) -> JobSpec:
    """Inverse of `to_json`; `kind` is the stored job-kind string (`spec.job_kind`)."""
    return SPECS[JobKind(kind)].from_json(data)


_KIND_TO_PB = {kind: runs_pb2.JobKind.Value(f"JOB_KIND_{kind.name}") for kind in JobKind}
_PB_TO_KIND: dict[int, JobKind] = {value: kind for kind, value in _KIND_TO_PB.items()}


def kind_to_pb(kind: JobKind) -> runs_pb2.JobKind.ValueType:
    return _KIND_TO_PB[kind]


def kind_from_pb(value: int) -> JobKind | None:
    """The kind of a `JobKind` enum value; None for UNSPECIFIED and values this build lacks."""
    return _PB_TO_KIND.get(value)


def job_from_pb(message: Any) -> JobSpec | None:
    """The job set in `message`'s `oneof job`, or None if none is set (or one this build lacks)."""
    which = message.WhichOneof("job")
    try:
        spec = SPECS[JobKind(which)]
    except ValueError:
        return None
    return spec.from_pb(getattr(message, which))


def job_to_pb(spec: JobSpec, message: Any) -> None:
    """Set `message`'s `oneof job` to `spec`."""
    arm = getattr(message, spec.job_kind.value)
    arm.CopyFrom(spec.to_pb())
    arm.SetInParent()
