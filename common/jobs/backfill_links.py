"""`backfill_links`: compute the PR -> issue closing links of one repository."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import require
from common.jobs.base import JobKind, JobSpec
from common.jobs.targets import repository_violations
from common.proto.ghpulse.v1 import runs_pb2


@dataclass(frozen=True)
class BackfillLinksSpec(JobSpec):
    #: "owner/name".
    repository: str = ""

    kind = job_kind = JobKind.BACKFILL_LINKS

    def validated(self) -> BackfillLinksSpec:
        spec = BackfillLinksSpec(self.repository.strip())
        require(repository_violations("backfill_links.repository", spec.repository))
        return spec

    def concurrency_key(self) -> str:
        """`links:<owner/repo>`: one backfill per repository at a time."""
        return f"links:{self.repository.lower()}"

    def to_json(self) -> dict[str, Any]:
        return {"repository": self.repository}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackfillLinksSpec:
        return cls(data.get("repository", ""))

    def to_pb(self) -> runs_pb2.BackfillLinksJob:
        return runs_pb2.BackfillLinksJob(repository=self.repository)

    @classmethod
    def from_pb(cls, message: runs_pb2.BackfillLinksJob) -> BackfillLinksSpec:
        return cls(message.repository)
