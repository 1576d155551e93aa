"""Protobuf <-> domain conversion for `ghpulse.v1.SchedulerService` (the client API)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from google.protobuf import duration_pb2, timestamp_pb2

from common import pb
from common.errors import FieldViolation, clip, require
from common.jobs import job_from_pb, job_to_pb, kind_from_pb, kind_to_pb
from common.logging import redact_text
from common.pb import strict_b64decode
from common.proto.ghpulse.v1 import runs_pb2, scheduler_service_pb2
from scheduler_service.runs.model import (
    ConflictPolicy,
    Disposition,
    EventKind,
    Run,
    RunError,
    RunEvent,
    RunQuery,
    RunState,
    StepState,
    StepStatus,
    Trigger,
)
from scheduler_service.runs.trigger import (
    MAX_LABEL_KEY,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    NUL_MESSAGE,
    TriggerCommand,
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: Longest run or schedule id accepted in a request (generated run ids have 30 characters).
MAX_ID = 128
MAX_REASON = 1024
MAX_PAGE_TOKEN = 512
MAX_ENUM_FILTERS = 16
MAX_CONCURRENCY_KEY_FILTER = 512

RUN_STATES = {
    RunState.PENDING: runs_pb2.RUN_STATE_PENDING,
    RunState.QUEUED: runs_pb2.RUN_STATE_QUEUED,
    RunState.RUNNING: runs_pb2.RUN_STATE_RUNNING,
    RunState.SUCCEEDED: runs_pb2.RUN_STATE_SUCCEEDED,
    RunState.FAILED: runs_pb2.RUN_STATE_FAILED,
    RunState.CANCELLED: runs_pb2.RUN_STATE_CANCELLED,
}
STEP_STATES = {
    StepState.PENDING: runs_pb2.STEP_STATE_PENDING,
    StepState.RUNNING: runs_pb2.STEP_STATE_RUNNING,
    StepState.SUCCEEDED: runs_pb2.STEP_STATE_SUCCEEDED,
    StepState.FAILED: runs_pb2.STEP_STATE_FAILED,
    StepState.CANCELLED: runs_pb2.STEP_STATE_CANCELLED,
}
TRIGGERS = {
    Trigger.API: runs_pb2.TRIGGER_API,
    Trigger.SCHEDULE: runs_pb2.TRIGGER_SCHEDULE,
    Trigger.BACKFILL: runs_pb2.TRIGGER_BACKFILL,
}
POLICIES = {
    scheduler_service_pb2.CONFLICT_POLICY_UNSPECIFIED: ConflictPolicy.JOIN,
    scheduler_service_pb2.CONFLICT_POLICY_JOIN: ConflictPolicy.JOIN,
    scheduler_service_pb2.CONFLICT_POLICY_QUEUE: ConflictPolicy.QUEUE,
    scheduler_service_pb2.CONFLICT_POLICY_REJECT: ConflictPolicy.REJECT,
}
DISPOSITIONS = {
    Disposition.CREATED: scheduler_service_pb2.DISPOSITION_CREATED,
    Disposition.JOINED: scheduler_service_pb2.DISPOSITION_JOINED,
    Disposition.QUEUED: scheduler_service_pb2.DISPOSITION_QUEUED,
    Disposition.IDEMPOTENT: scheduler_service_pb2.DISPOSITION_IDEMPOTENT,
}


_K = TypeVar("_K")


def key_of(mapping: Mapping[_K, int], value: int) -> _K | None:
    """The domain value `mapping` converts to the protobuf enum `value` (None: unknown)."""
    return next((key for key, pb_value in mapping.items() if pb_value == value), None)


def error_to_pb(error: RunError | None) -> runs_pb2.RunError | None:
    if error is None:
        return None
    return runs_pb2.RunError(code=error.code, message=error.message, retryable=error.retryable)


def step_to_pb(step: StepStatus) -> runs_pb2.Step:
    return runs_pb2.Step(
        name=step.name,
        state=STEP_STATES[step.state],
        current=step.current,
        total=step.total,
        message=step.message,
        started_at=pb.timestamp(step.started_at),
        finished_at=pb.timestamp(step.finished_at),
        attempt=step.attempt,
    )


def run_to_pb(run: Run) -> runs_pb2.Run:
    message = runs_pb2.Run(
        id=run.id,
        state=RUN_STATES[run.state],
        attempt=run.attempt,
        max_attempts=run.max_attempts,
        steps=[step_to_pb(s) for s in run.steps],
        output=pb.struct(run.output),
        error=error_to_pb(run.error),
        labels=run.labels,
        concurrency_key=run.concurrency_key,
        trigger=TRIGGERS[run.trigger],
        schedule_id=run.schedule_id,
        nominal_time=pb.timestamp(run.nominal_time),
        created_at=pb.timestamp(run.created_at),
        started_at=pb.timestamp(run.started_at),
        finished_at=pb.timestamp(run.finished_at),
        deadline_at=pb.timestamp(run.deadline_at),
        last_seq=run.last_seq,
        worker_id=run.worker_id,
        cancel_requested=run.cancel_requested_at is not None,
        job_kind=kind_to_pb(run.spec.job_kind),
        not_before=pb.timestamp(run.not_before),
        triggered_by=run.triggered_by,
        cancelled_by=run.cancelled_by,
        retried_by=run.retried_by,
        parent_run_id=run.parent_run_id,
        children_total=run.children_total,
        children_done=run.children_done,
    )
    job_to_pb(run.spec, message)
    return message


def event_to_pb(event: RunEvent) -> runs_pb2.RunEvent:
    message = runs_pb2.RunEvent(
        seq=event.seq, run_id=event.run_id, time=pb.timestamp(event.time), attempt=event.attempt
    )
    data = event.data
    if event.kind is EventKind.STATE_CHANGED:
        message.state_changed.CopyFrom(
            runs_pb2.RunStateChanged(
                state=RUN_STATES[RunState(data["state"])],
                attempt=event.attempt,
                error=error_to_pb(RunError.from_json(data.get("error"))),
                output=pb.struct(data.get("output")),
                reason=data.get("reason", ""),
            )
        )
    elif event.kind is EventKind.STEP_STARTED:
        message.step_started.CopyFrom(
            runs_pb2.StepStarted(
                step=data["step"], total=data.get("total", 0), message=data.get("message", "")
            )
        )
    elif event.kind is EventKind.STEP_PROGRESS:
        message.step_progress.CopyFrom(
            runs_pb2.StepProgress(
                step=data["step"],
                current=data.get("current", 0),
                total=data.get("total", 0),
                message=data.get("message", ""),
            )
        )
    else:
        message.step_finished.CopyFrom(
            runs_pb2.StepFinished(
                step=data["step"],
                state=STEP_STATES[StepState(data["state"])],
                output=pb.struct(data.get("output")),
                message=data.get("message", ""),
            )
        )
    return message


NUL = "\x00"


def _time(
    message: timestamp_pb2.Timestamp, present: bool, field: str, violations: list[FieldViolation]
) -> datetime | None:
    """The timestamp, or None with a violation when it is out of range (not an INTERNAL error)."""
    try:
        return pb.from_timestamp(message, present)
    except (ValueError, OverflowError):
        violations.append(FieldViolation(field, "not a valid timestamp"))
        return None


def _duration(
    message: duration_pb2.Duration, present: bool, field: str, violations: list[FieldViolation]
) -> timedelta | None:
    if not present:
        return None
    try:
        return pb.from_duration(message)
    except (ValueError, OverflowError):
        violations.append(FieldViolation(field, "not a valid duration"))
        return None


def nul_violations(field: str, values: Mapping[str, str]) -> list[FieldViolation]:
    """Strings with NUL characters (PostgreSQL rejects them in text: INTERNAL otherwise)."""
    return [
        FieldViolation(f"{field}[{clip(key)}]" if key else field, NUL_MESSAGE)
        for key, value in values.items()
        if NUL in key or NUL in value
    ]


def label_filter_violations(labels: Mapping[str, str]) -> list[FieldViolation]:
    """ListRuns' label filters: as many and as long as labels may be (each one is a join)."""
    violations = nul_violations("labels", labels)
    if len(labels) > MAX_LABELS:
        violations.append(FieldViolation("labels", f"at most {MAX_LABELS} label filters"))
    violations += [
        FieldViolation(
            f"labels[{clip(key)}]",
            f"keys at most {MAX_LABEL_KEY}, values at most {MAX_LABEL_VALUE} characters",
        )
        for key, value in labels.items()
        if len(key) > MAX_LABEL_KEY or len(value) > MAX_LABEL_VALUE
    ]
    return violations


def reason_from_pb(reason: str) -> str:
    """A CancelRun reason: at most `MAX_REASON` characters, no NUL."""
    violations = nul_violations("reason", {"": reason})
    if len(reason) > MAX_REASON:
        violations.append(FieldViolation("reason", f"at most {MAX_REASON} characters"))
    require(violations)
    return redact_text(reason)


def _server_set_violations(
    request: scheduler_service_pb2.TriggerRunRequest,
) -> list[FieldViolation]:
    """Fields the scheduler sets itself: a client claiming a schedule's run is refused."""
    violations = []
    if request.trigger == runs_pb2.TRIGGER_SCHEDULE:
        violations.append(FieldViolation("trigger", "TRIGGER_SCHEDULE is set by the scheduler"))
    elif request.trigger and key_of(TRIGGERS, request.trigger) is None:
        violations.append(FieldViolation("trigger", f"unknown trigger {request.trigger}"))
    if request.schedule_id:
        violations.append(FieldViolation("schedule_id", "set by the scheduler, not by clients"))
    if request.HasField("nominal_time"):
        violations.append(FieldViolation("nominal_time", "set by the scheduler, not by clients"))
    return violations


def trigger_from_pb(request: scheduler_service_pb2.TriggerRunRequest) -> TriggerCommand:
    """The request as a command; `trigger` is only a hint here (see `access.trigger_as`)."""
    violations = _server_set_violations(request)
    policy = POLICIES.get(request.on_conflict)
    if policy is None:
        violations.append(FieldViolation("on_conflict", f"unknown policy {request.on_conflict}"))
    trigger = key_of(TRIGGERS, request.trigger) or Trigger.API
    if request.max_attempts < 0:
        violations.append(FieldViolation("max_attempts", "must not be negative"))
    deadline = _duration(request.deadline, request.HasField("deadline"), "deadline", violations)
    require(violations)
    assert policy is not None
    return TriggerCommand(
        spec=job_from_pb(request),
        concurrency_key=request.concurrency_key.strip(),
        policy=policy,
        request_id=request.request_id,
        labels=dict(request.labels),
        max_attempts=request.max_attempts,
        deadline=deadline,
        trigger=trigger,
    )


def encode_page_token(run: Run) -> str:
    raw = json.dumps({"c": run.created_at.isoformat(), "i": run.id}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        if len(token) > MAX_PAGE_TOKEN:
            raise ValueError("too long")
        data = json.loads(strict_b64decode(token))
        created = datetime.fromisoformat(data["c"])
        run_id = data["i"]
        if created.tzinfo is None or not isinstance(run_id, str) or NUL in run_id:
            raise ValueError("not a token")
        return created.astimezone(UTC), run_id[:MAX_ID]
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError, OverflowError):
        require([FieldViolation("page_token", "not a page token returned by ListRuns")])
        raise AssertionError("unreachable") from None


def query_from_pb(request: scheduler_service_pb2.ListRunsRequest) -> RunQuery:
    violations = nul_violations("concurrency_key", {"": request.concurrency_key})
    violations += nul_violations("parent_run_id", {"": request.parent_run_id})
    if len(request.parent_run_id) > MAX_ID:
        violations.append(FieldViolation("parent_run_id", f"at most {MAX_ID} characters"))
    if len(request.concurrency_key) > MAX_CONCURRENCY_KEY_FILTER:
        violations.append(
            FieldViolation("concurrency_key", f"at most {MAX_CONCURRENCY_KEY_FILTER} characters")
        )
    violations += label_filter_violations(dict(request.labels))
    if request.page_size < 0:
        violations.append(FieldViolation("page_size", "must not be negative"))
    for name, values in (("jobs", request.jobs), ("states", request.states)):
        if len(values) > MAX_ENUM_FILTERS:
            violations.append(FieldViolation(name, f"at most {MAX_ENUM_FILTERS} values"))
    jobs = []
    for index, value in enumerate(request.jobs):
        kind = kind_from_pb(value)
        if kind is None:
            violations.append(FieldViolation(f"jobs[{index}]", f"unknown job kind {value}"))
        else:
            jobs.append(kind.value)
    states = []
    for index, state_value in enumerate(request.states):
        state = key_of(RUN_STATES, state_value)
        if state is None:
            violations.append(FieldViolation(f"states[{index}]", f"unknown state {state_value}"))
        else:
            states.append(state)
    trigger = key_of(TRIGGERS, request.trigger) if request.trigger else None
    if request.trigger and trigger is None:
        violations.append(FieldViolation("trigger", f"unknown trigger {request.trigger}"))
    after = _time(
        request.created_after, request.HasField("created_after"), "created_after", violations
    )
    before = _time(
        request.created_before, request.HasField("created_before"), "created_before", violations
    )
    require(violations)
    return RunQuery(
        jobs=tuple(jobs),
        states=tuple(states),
        labels=dict(request.labels),
        concurrency_key=request.concurrency_key,
        trigger=trigger,
        parent_run_id=request.parent_run_id,
        created_after=after,
        created_before=before,
        page_size=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        after=decode_page_token(request.page_token) if request.page_token else None,
    )


def required_id(value: str, field: str) -> str:
    """A run or schedule id from a request: present and storable, else InvalidArgument."""
    require([FieldViolation(field, "required")] if not value.strip() else [])
    # PostgreSQL rejects NUL in text: an INTERNAL error otherwise.
    require([FieldViolation(field, NUL_MESSAGE)] if NUL in value else [])
    require([FieldViolation(field, f"at most {MAX_ID} characters")] if len(value) > MAX_ID else [])
    return value.strip()
