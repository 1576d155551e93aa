"""The job spec interface: everything a kind of job defines, in one class per kind."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Self

from google.protobuf.message import Message


class JobKind(StrEnum):
    """A kind of job. Its value is three names at once: the job-kind string stored with runs and
    schedules, the `oneof job` arm of the protobuf messages, and (upper-cased, as
    `JOB_KIND_<NAME>`) the `JobKind` protobuf enum value."""

    CRAWL = "crawl"
    RECALCULATE = "recalculate"
    BACKFILL_LINKS = "backfill_links"
    #: Any job a crawler plugin adds; `PluginJobSpec.kind` names which.
    PLUGIN = "plugin"


class JobSpec(ABC):
    """The parameters of one job: a frozen dataclass per kind (`CrawlSpec`, `PluginJobSpec`...).

    The scheduler validates a spec, derives its default concurrency key, stores it as JSON and
    sends it to crawlers as protobuf; the crawler runs the job registered under `kind`.
    """

    #: The kind of job (see `JobKind`).
    job_kind: ClassVar[JobKind]
    #: The name the crawler's `JobRegistry` knows the job by: `job_kind` for built-in jobs, the
    #: plugin's own name for plugin jobs.
    kind: str

    @abstractmethod
    def validated(self) -> Self:
        """This spec normalized (whitespace trimmed, duplicates dropped); raises
        `InvalidArgument` naming each bad field as `<job_kind>.<field>`."""

    @abstractmethod
    def concurrency_key(self) -> str:
        """The default concurrency key of a run of this (validated) spec."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The parameters as JSON-compatible data (stored with the run, beside `job_kind`)."""

    @classmethod
    @abstractmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of `to_json`."""

    @abstractmethod
    def to_pb(self) -> Message:
        """The message of this kind's `oneof job` arm."""

    @classmethod
    @abstractmethod
    def from_pb(cls, message: Any) -> Self:
        """Inverse of `to_pb` (no validation: that is `validated`'s job)."""
