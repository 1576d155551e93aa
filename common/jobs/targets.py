"""What crawl, recalculate and backfill_links jobs work on: repositories and organizations."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from common.errors import FieldViolation, quote

MAX_TARGETS = 1000
#: GitHub's rules: an owner is 1-39 letters, digits or '-', not starting with '-'; a repository
#: name 1-100 letters, digits, '.', '_' or '-', but never '.' or '..' (they would be paths).
_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_REPOSITORY = re.compile(rf"^{_OWNER}/(?!\.{{1,2}}$)[A-Za-z0-9._-]{{1,100}}$")
_ORGANIZATION = re.compile(rf"^{_OWNER}$")


def is_repository(name: str) -> bool:
    """Whether `name` is an 'owner/name' repository by GitHub's rules."""
    return _REPOSITORY.match(name) is not None


def is_login(name: str) -> bool:
    """Whether `name` is a GitHub user or organization login."""
    return _ORGANIZATION.match(name) is not None


def dedupe(items: Iterable[str]) -> tuple[str, ...]:
    """`items` with whitespace trimmed and duplicates dropped, in order."""
    return tuple(dict.fromkeys(item.strip() for item in items))


def repository_violations(field: str, name: str) -> list[FieldViolation]:
    """A violation of `field` unless `name` is an 'owner/name' repository."""
    if _REPOSITORY.match(name):
        return []
    return [FieldViolation(field, f"{quote(name)} is not an 'owner/name' repository")]


def target_violations(
    prefix: str, repositories: tuple[str, ...], organization: str
) -> list[FieldViolation]:
    """Repositories and/or an organization, at least one, each well formed."""
    violations = []
    if not repositories and not organization:
        violations.append(FieldViolation(prefix, "name at least one repository or an organization"))
    if len(repositories) > MAX_TARGETS:
        violations.append(
            FieldViolation(f"{prefix}.repositories", f"at most {MAX_TARGETS} repositories")
        )
    for index, name in enumerate(repositories):
        violations += repository_violations(f"{prefix}.repositories[{index}]", name)
    if organization and not _ORGANIZATION.match(organization):
        violations.append(
            FieldViolation(f"{prefix}.organization", f"{quote(organization)} is not a GitHub login")
        )
    return violations


#: A default key longer than this names its targets by digest (keys are at most 512 characters).
MAX_TARGET_KEY = 256


def target_key(prefix: str, repositories: tuple[str, ...], organization: str) -> str:
    """`<prefix>:` + the sorted, lowercased targets (the default concurrency key's core); past
    MAX_TARGET_KEY characters, `<prefix>:<n> targets:<sha256 of the targets, 32 hex digits>`."""
    targets = sorted(name.lower() for name in repositories)
    if organization:
        targets.append(f"org:{organization.lower()}")
    key = f"{prefix}:{','.join(targets)}"
    if len(key) <= MAX_TARGET_KEY:
        return key
    digest = hashlib.sha256(",".join(targets).encode()).hexdigest()[:32]
    return f"{prefix}:{len(targets)} targets:{digest}"
