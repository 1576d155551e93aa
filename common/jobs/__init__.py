"""The jobs a run can execute, as domain types: one spec class per kind of job.

Each spec class (`base.JobSpec`) owns its kind's parameters, validation, default concurrency key,
JSON form (stored with runs and schedules) and protobuf form (its `oneof job` arm); `kinds` lists
the classes and applies those operations to any job. `PluginJobSpec` carries the jobs crawler
plugins add. Users and plugins import from here:

    from common.jobs import CrawlSpec, JobSpec, PluginJobSpec
"""

from __future__ import annotations

from common.jobs.backfill_links import BackfillLinksSpec
from common.jobs.base import JobKind, JobSpec
from common.jobs.crawl import CrawlSpec
from common.jobs.kinds import (
    SPECS,
    default_concurrency_key,
    from_json,
    job_from_pb,
    job_to_pb,
    kind_from_pb,
    kind_to_pb,
    missing_job,
    to_json,
    validate,
)
from common.jobs.plugin import MAX_PARAMS_BYTES, PLUGIN_KIND, PluginJobSpec
from common.jobs.recalculate import RECALCULATE_STEPS, RecalculateSpec
from common.jobs.targets import MAX_TARGETS

__all__ = [
    "MAX_PARAMS_BYTES",
    "MAX_TARGETS",
    "PLUGIN_KIND",
    "RECALCULATE_STEPS",
    "SPECS",
    "BackfillLinksSpec",
    "CrawlSpec",
    "JobKind",
    "JobSpec",
    "PluginJobSpec",
    "RecalculateSpec",
    "default_concurrency_key",
    "from_json",
    "job_from_pb",
    "job_to_pb",
    "kind_from_pb",
    "kind_to_pb",
    "missing_job",
    "to_json",
    "validate",
]
