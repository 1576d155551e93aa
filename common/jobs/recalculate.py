"""`recalculate`: rebuild derived data from stored raw data, without calling GitHub."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import FieldViolation, quote, require
from common.jobs.base import JobKind, JobSpec
from common.jobs.targets import dedupe, target_key, target_violations
from common.proto.ghpulse.v1 import runs_pb2

RECALCULATE_STEPS = ("upsert", "link", "classify", "export")


@dataclass(frozen=True)
class RecalculateSpec(JobSpec):
    repositories: tuple[str, ...] = ()
    organization: str = ""
    #: A non-empty subset of `RECALCULATE_STEPS`.
    steps: tuple[str, ...] = ()

    kind = job_kind = JobKind.RECALCULATE

    def validated(self) -> RecalculateSpec:
        spec = RecalculateSpec(
            dedupe(self.repositories), self.organization.strip(), dedupe(self.steps)
        )
        violations = target_violations("recalculate", spec.repositories, spec.organization)
        choices = ", ".join(RECALCULATE_STEPS)
        if not spec.steps:
            violations.append(
                FieldViolation("recalculate.steps", f"name at least one of {choices}")
            )
        violations += [
            FieldViolation("recalculate.steps", f"unknown step {quote(step)}; one of {choices}")
            for step in spec.steps
            if step not in RECALCULATE_STEPS
        ]
        require(violations)
        return spec

    def concurrency_key(self) -> str:
        """Job kind + sorted targets (whatever the steps)."""
        return target_key("recalculate", self.repositories, self.organization)

    def to_json(self) -> dict[str, Any]:
        return {
            "repositories": list(self.repositories),
            "organization": self.organization,
            "steps": list(self.steps),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecalculateSpec:
        return cls(
            tuple(data.get("repositories", ())),
            data.get("organization", ""),
            tuple(data.get("steps", ())),
        )

    def to_pb(self) -> runs_pb2.RecalculateJob:
        return runs_pb2.RecalculateJob(
            repositories=self.repositories, organization=self.organization, steps=self.steps
        )

    @classmethod
    def from_pb(cls, message: runs_pb2.RecalculateJob) -> RecalculateSpec:
        return cls(tuple(message.repositories), message.organization, tuple(message.steps))
