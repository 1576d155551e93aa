"""`crawl`: fetch pull requests of repositories and/or an organization from GitHub."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import require
from common.jobs.base import JobKind, JobSpec
from common.jobs.targets import dedupe, target_key, target_violations
from common.proto.ghpulse.v1 import runs_pb2


@dataclass(frozen=True)
class CrawlSpec(JobSpec):
    repositories: tuple[str, ...] = ()
    organization: str = ""
    #: Ignore watermarks and stored ETags: fetch everything again.
    refresh: bool = False

    kind = job_kind = JobKind.CRAWL

    def validated(self) -> CrawlSpec:
        spec = CrawlSpec(dedupe(self.repositories), self.organization.strip(), self.refresh)
        require(target_violations("crawl", spec.repositories, spec.organization))
        return spec

    def concurrency_key(self) -> str:
        """Job kind + sorted targets, + `:refresh` for a refresh."""
        key = target_key("crawl", self.repositories, self.organization)
        return f"{key}:refresh" if self.refresh else key

    def to_json(self) -> dict[str, Any]:
        return {
            "repositories": list(self.repositories),
            "organization": self.organization,
            "refresh": self.refresh,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CrawlSpec:
        return cls(
            tuple(data.get("repositories", ())),
            data.get("organization", ""),
            bool(data.get("refresh", False)),
        )

    def to_pb(self) -> runs_pb2.CrawlJob:
        return runs_pb2.CrawlJob(
            repositories=self.repositories, organization=self.organization, refresh=self.refresh
        )

    @classmethod
    def from_pb(cls, message: runs_pb2.CrawlJob) -> CrawlSpec:
        return cls(tuple(message.repositories), message.organization, message.refresh)
