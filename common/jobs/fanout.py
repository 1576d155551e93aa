"""Fan-out: a crawl or recalculate over several repositories or an organization runs as one child
run per repository under a parent run. This module is the part both services share (which jobs
fan out, the children's jobs and keys, the plan's output, the parent's summed output); the
scheduler's run store does the rest (`scheduler_service.runs.sql.fanout`).

The model:

- A run whose job names several repositories and no organization is a *parent* from the start:
  when it takes its concurrency key's active slot (at trigger time, or when promoted from the
  queue) the scheduler creates one child per repository in the same transaction and the parent
  becomes RUNNING with no crawler (`worker_id` empty, no lease): it is never dispatched.
- A run whose job names an organization needs a crawler first (the scheduler knows nothing of
  GitHub): it is dispatched like any run, and the crawler runs only the `plan` step, which lists
  the organization's repositories (refreshed on every run: GitHub's non-archived repositories for
  a crawl, the stored ones for a recalculate) plus the named ones, and returns them as the
  attempt's output `{"fan_out": [...]}`. The scheduler then creates the children in the
  transaction that ends the attempt, and the crawler's slot is free again.
- A child is a normal run of the same job for one repository: claimed by any crawler, leased,
  retried and checkpointed on its own. It inherits the parent's labels, trigger, schedule id,
  nominal time, triggerer, attempt budget and deadline. Its concurrency key is
  `<job>:<owner/name>` (lowercased; `crawl:octo/a` is also the default key of an on-demand crawl
  of that one repository): behind an active run of that key it waits QUEUED, in line with any
  other waiting runs of the key, so one repository is never swept by two runs at once.
- As children end, the parent's `repositories` step counts them (`children_done` of
  `children_total`); a child's step starts are also logged as progress events of the parent.
  When the last child ends, the parent ends: SUCCEEDED if every child succeeded, CANCELLED if
  its cancellation was asked, FAILED otherwise (error `CHILDREN_FAILED` naming the repositories).
  Its output sums the children's outputs (`sum_outputs`: the keys of a single run's output,
  numbers added and lists joined) plus `children` (counts and the failed ones).
- Cancelling the parent cancels every child still active; RetryRun of a failed parent retries
  its failed and cancelled children.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from common.jobs.base import JobSpec
from common.jobs.crawl import CrawlSpec
from common.jobs.recalculate import RecalculateSpec

#: The output key of a plan attempt: the repositories to fan out to.
PLAN_OUTPUT = "fan_out"
#: The name of the crawler step that lists an organization's repositories.
PLAN_STEP = "plan"
#: The name of the parent's step counting its children.
CHILDREN_STEP = "repositories"


def fans_out(spec: JobSpec) -> bool:
    """Whether a run of `spec` is a fan-out parent: a crawl or recalculate of an organization or
    of several repositories."""
    if not isinstance(spec, CrawlSpec | RecalculateSpec):
        return False
    return bool(spec.organization) or len(spec.repositories) > 1


def needs_plan(spec: JobSpec) -> bool:
    """Whether a crawler must list the repositories first (the job names an organization)."""
    return fans_out(spec) and bool(getattr(spec, "organization", ""))


def child_spec(spec: JobSpec, repository: str) -> JobSpec:
    """The job of `spec`'s child for `repository`."""
    if isinstance(spec, CrawlSpec):
        return CrawlSpec((repository,), refresh=spec.refresh)
    if isinstance(spec, RecalculateSpec):
        return RecalculateSpec((repository,), steps=spec.steps)
    raise ValueError(f"a {spec.kind} job does not fan out")


def child_key(spec: JobSpec, repository: str) -> str:
    """A child's concurrency key: one active run of the job per repository, across parents."""
    return f"{spec.job_kind.value}:{repository.lower()}"


def planned(output: Mapping[str, Any] | None) -> list[str] | None:
    """The repositories a plan attempt returned, or None if `output` is not a plan's."""
    if not output or PLAN_OUTPUT not in output:
        return None
    return [str(name) for name in output[PLAN_OUTPUT]]


def sum_outputs(outputs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The children's outputs summed key by key: numbers added, lists joined, mappings summed
    the same way; any other value is the first child's."""
    total: dict[str, Any] = {}
    for output in outputs:
        for key, value in output.items():
            total[key] = _add(total[key], value) if key in total else _copy(value)
    return total


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, bool) or isinstance(right, bool):
        return left
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left + right
    if isinstance(left, list) and isinstance(right, list):
        return left + right
    if isinstance(left, dict) and isinstance(right, dict):
        return sum_outputs([left, right])
    return left


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return sum_outputs([value])
    return value
