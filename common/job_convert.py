"""Conversion between job protobuf messages and `common.jobs` domain types.

TriggerRunRequest, Run and Assignment all carry the same `oneof job`; these functions read and write
that oneof on any of them.
"""

from __future__ import annotations

from typing import Any

from common.jobs import BackfillLinksSpec, CrawlSpec, JobKind, JobSpec, RecalculateSpec
from common.proto.ghpulse.v1 import runs_pb2

_KIND_TO_PB = {
    JobKind.CRAWL: runs_pb2.JOB_KIND_CRAWL,
    JobKind.RECALCULATE: runs_pb2.JOB_KIND_RECALCULATE,
    JobKind.BACKFILL_LINKS: runs_pb2.JOB_KIND_BACKFILL_LINKS,
}
_PB_TO_KIND = {value: kind for kind, value in _KIND_TO_PB.items()}


def kind_to_pb(kind: JobKind) -> runs_pb2.JobKind.ValueType:
    return _KIND_TO_PB[kind]


def kind_from_pb(value: int) -> JobKind | None:
    for pb_value, kind in _PB_TO_KIND.items():
        if pb_value == value:
            return kind
    return None


def job_from_pb(message: Any) -> JobSpec | None:
    """The job set in `message`'s `oneof job`, or None if none is set."""
    which = message.WhichOneof("job")
    if which == "crawl":
        crawl = message.crawl
        return CrawlSpec(tuple(crawl.repositories), crawl.organization, crawl.refresh)
    if which == "recalculate":
        recalculate = message.recalculate
        return RecalculateSpec(
            tuple(recalculate.repositories), recalculate.organization, tuple(recalculate.steps)
        )
    if which == "backfill_links":
        return BackfillLinksSpec(message.backfill_links.repository)
    return None


def job_to_pb(spec: JobSpec, message: Any) -> None:
    """Set `message`'s `oneof job` to `spec`."""
    if isinstance(spec, CrawlSpec):
        message.crawl.repositories.extend(spec.repositories)
        message.crawl.organization = spec.organization
        message.crawl.refresh = spec.refresh
        message.crawl.SetInParent()
    elif isinstance(spec, RecalculateSpec):
        message.recalculate.repositories.extend(spec.repositories)
        message.recalculate.organization = spec.organization
        message.recalculate.steps.extend(spec.steps)
        message.recalculate.SetInParent()
    else:
        message.backfill_links.repository = spec.repository
        message.backfill_links.SetInParent()
