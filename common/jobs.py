"""The jobs a run can execute, as domain types: parameters, validation, concurrency keys."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from common.errors import FieldViolation, require

MAX_TARGETS = 1000
RECALCULATE_STEPS = ("upsert", "link", "classify", "export")
_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_REPOSITORY = re.compile(rf"^{_OWNER}/[A-Za-z0-9._-]{{1,100}}$")
_ORGANIZATION = re.compile(rf"^{_OWNER}$")


class JobKind(StrEnum):
    CRAWL = "crawl"
    RECALCULATE = "recalculate"
    BACKFILL_LINKS = "backfill_links"


@dataclass(frozen=True)
class CrawlSpec:
    repositories: tuple[str, ...] = ()
    organization: str = ""
    refresh: bool = False

    kind = JobKind.CRAWL


@dataclass(frozen=True)
class RecalculateSpec:
    repositories: tuple[str, ...] = ()
    organization: str = ""
    steps: tuple[str, ...] = ()

    kind = JobKind.RECALCULATE


@dataclass(frozen=True)
class BackfillLinksSpec:
    repository: str = ""

    kind = JobKind.BACKFILL_LINKS


JobSpec = CrawlSpec | RecalculateSpec | BackfillLinksSpec


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item.strip() for item in items))


def _target_violations(
    prefix: str, repositories: tuple[str, ...], organization: str
) -> list[FieldViolation]:
    violations = []
    if not repositories and not organization:
        violations.append(FieldViolation(prefix, "name at least one repository or an organization"))
    if len(repositories) > MAX_TARGETS:
        violations.append(
            FieldViolation(f"{prefix}.repositories", f"at most {MAX_TARGETS} repositories")
        )
    for index, name in enumerate(repositories):
        if not _REPOSITORY.match(name):
            violations.append(
                FieldViolation(
                    f"{prefix}.repositories[{index}]", f"{name!r} is not an 'owner/name' repository"
                )
            )
    if organization and not _ORGANIZATION.match(organization):
        violations.append(
            FieldViolation(f"{prefix}.organization", f"{organization!r} is not a GitHub login")
        )
    return violations


def validate(spec: JobSpec | None) -> JobSpec:
    """`spec`, normalized (whitespace trimmed, duplicates dropped); raises InvalidArgument."""
    if spec is None:
        require([FieldViolation("job", "set one job: crawl, recalculate or backfill_links")])
        raise AssertionError("unreachable")
    if isinstance(spec, CrawlSpec):
        spec = CrawlSpec(_dedupe(spec.repositories), spec.organization.strip(), spec.refresh)
        require(_target_violations("crawl", spec.repositories, spec.organization))
    elif isinstance(spec, RecalculateSpec):
        spec = RecalculateSpec(
            _dedupe(spec.repositories), spec.organization.strip(), _dedupe(spec.steps)
        )
        violations = _target_violations("recalculate", spec.repositories, spec.organization)
        if not spec.steps:
            violations.append(
                FieldViolation(
                    "recalculate.steps", f"name at least one of {', '.join(RECALCULATE_STEPS)}"
                )
            )
        violations += [
            FieldViolation(
                "recalculate.steps", f"unknown step {step!r}; one of {', '.join(RECALCULATE_STEPS)}"
            )
            for step in spec.steps
            if step not in RECALCULATE_STEPS
        ]
        require(violations)
    else:
        spec = BackfillLinksSpec(spec.repository.strip())
        if not _REPOSITORY.match(spec.repository):
            require(
                [
                    FieldViolation(
                        "backfill_links.repository",
                        f"{spec.repository!r} is not an 'owner/name' repository",
                    )
                ]
            )
    return spec


def default_concurrency_key(spec: JobSpec) -> str:
    """Job kind + sorted targets (+ the refresh flag for crawls); `links:<repo>` for backfills."""
    if isinstance(spec, BackfillLinksSpec):
        return f"links:{spec.repository.lower()}"
    targets = sorted(name.lower() for name in spec.repositories)
    if spec.organization:
        targets.append(f"org:{spec.organization.lower()}")
    key = f"{spec.kind.value}:{','.join(targets)}"
    if isinstance(spec, CrawlSpec) and spec.refresh:
        key += ":refresh"
    return key


def to_json(spec: JobSpec) -> dict[str, Any]:
    """The job's parameters as JSON-compatible data (stored with the run)."""
    if isinstance(spec, CrawlSpec):
        return {
            "repositories": list(spec.repositories),
            "organization": spec.organization,
            "refresh": spec.refresh,
        }
    if isinstance(spec, RecalculateSpec):
        return {
            "repositories": list(spec.repositories),
            "organization": spec.organization,
            "steps": list(spec.steps),
        }
    return {"repository": spec.repository}


def from_json(kind: JobKind | str, data: Mapping[str, Any]) -> JobSpec:
    """Inverse of `to_json`."""
    kind = JobKind(kind)
    if kind is JobKind.CRAWL:
        return CrawlSpec(
            tuple(data.get("repositories", ())),
            data.get("organization", ""),
            bool(data.get("refresh", False)),
        )
    if kind is JobKind.RECALCULATE:
        return RecalculateSpec(
            tuple(data.get("repositories", ())),
            data.get("organization", ""),
            tuple(data.get("steps", ())),
        )
    return BackfillLinksSpec(data.get("repository", ""))
