"""What the caller of a run RPC may do and see (its token's scopes and label scope).

A label-scoped caller (`team=core`) triggers only runs carrying its labels (missing ones are
added), and any other run is NOT_FOUND to it, exactly as if it did not exist. A crawler's token
(`worker` without `runs:write`) may trigger only `backfill_links` runs. The run's `trigger` and
`triggered_by` come from the credential, never from the request.
"""

from __future__ import annotations

from dataclasses import replace

from common.auth.caller import Caller
from common.auth.scopes import RUNS_WRITE
from common.errors import PermissionDenied
from common.jobs import BackfillLinksSpec
from scheduler_service.errors import RunNotFound
from scheduler_service.runs.model import Run, RunQuery, Trigger
from scheduler_service.runs.trigger import TriggerCommand


def trigger_as(command: TriggerCommand, caller: Caller) -> TriggerCommand:
    """`command` as `caller` may send it: labels of its scope added, trigger and author set."""
    backfill = isinstance(command.spec, BackfillLinksSpec)
    if caller.worker_only and not backfill:
        raise PermissionDenied(
            "a worker token may trigger only backfill_links runs",
            required=RUNS_WRITE,
            token=caller.name,
        )
    labels = dict(command.labels)
    for key, value in caller.labels.items():
        if labels.setdefault(key, value) != value:
            raise PermissionDenied(
                f"token {caller.name!r} may only trigger runs labelled {key}={value}",
                label=key,
                token=caller.name,
            )
    # A crawler's query path starts backfills; anyone else's trigger is an API call (a backfill
    # started by hand included, if it says so).
    from_query_path = caller.worker_only or (backfill and command.trigger is Trigger.BACKFILL)
    trigger = Trigger.BACKFILL if from_query_path else Trigger.API
    return replace(command, labels=labels, trigger=trigger, triggered_by=caller.name)


def visible(run: Run, caller: Caller) -> Run:
    """`run`, or `RunNotFound` if it is outside the caller's label scope."""
    if not caller.sees(run.labels):
        raise RunNotFound(run.id)
    return run


def scoped_query(query: RunQuery, caller: Caller) -> RunQuery | None:
    """`query` narrowed to the caller's label scope (None: it can match nothing)."""
    labels = dict(query.labels)
    for key, value in caller.labels.items():
        if labels.setdefault(key, value) != value:
            return None
    return replace(query, labels=labels)
