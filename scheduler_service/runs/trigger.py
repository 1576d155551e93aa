"""Validating TriggerRun requests into `NewRun`s (bad input -> InvalidArgument, never INTERNAL)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common.errors import FieldViolation, InvalidArgument, clip, require
from common.jobs import JobSpec, default_concurrency_key, to_json, validate
from scheduler_service.runs.model import ConflictPolicy, NewRun, Trigger

MAX_LABELS = 32
MAX_LABEL_KEY = 63
MAX_LABEL_VALUE = 256
MAX_REQUEST_ID = 128
MAX_CONCURRENCY_KEY = 512
MAX_ATTEMPTS = 100
MAX_DEADLINE = timedelta(days=7)
NUL_MESSAGE = "must not contain NUL characters"
_LABEL_KEY = re.compile(r"^[a-z0-9]([a-z0-9_.\-/]*[a-z0-9])?$")


@dataclass(frozen=True)
class TriggerCommand:
    """A TriggerRun request, decoded from protobuf but not yet validated."""

    spec: JobSpec | None
    concurrency_key: str = ""
    policy: ConflictPolicy = ConflictPolicy.JOIN
    request_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    max_attempts: int = 0
    deadline: timedelta | None = None
    trigger: Trigger = Trigger.API
    schedule_id: str = ""
    nominal_time: datetime | None = None
    #: Who asks (the caller's token name), recorded on a created run.
    triggered_by: str = ""


def _label_violations(labels: dict[str, str]) -> list[FieldViolation]:
    violations = []
    if len(labels) > MAX_LABELS:
        violations.append(FieldViolation("labels", f"at most {MAX_LABELS} labels"))
    for key, value in labels.items():
        if len(key) > MAX_LABEL_KEY or not _LABEL_KEY.match(key):
            violations.append(
                FieldViolation(
                    f"labels[{clip(key)}]",
                    f"keys are 1-{MAX_LABEL_KEY} lowercase letters, digits, '_', '.', '-', '/'",
                )
            )
        if "\x00" in value:
            violations.append(FieldViolation(f"labels[{clip(key)}]", NUL_MESSAGE))
        if len(value) > MAX_LABEL_VALUE:
            violations.append(
                FieldViolation(
                    f"labels[{clip(key)}]", f"values are at most {MAX_LABEL_VALUE} characters"
                )
            )
    return violations


def _option_violations(command: TriggerCommand) -> list[FieldViolation]:
    violations = _label_violations(command.labels)
    if len(command.request_id) > MAX_REQUEST_ID:
        violations.append(FieldViolation("request_id", f"at most {MAX_REQUEST_ID} characters"))
    if len(command.concurrency_key) > MAX_CONCURRENCY_KEY:
        violations.append(
            FieldViolation("concurrency_key", f"at most {MAX_CONCURRENCY_KEY} characters")
        )
    for name, value in (
        ("concurrency_key", command.concurrency_key),
        ("request_id", command.request_id),
        ("schedule_id", command.schedule_id),
    ):
        if "\x00" in value:
            violations.append(FieldViolation(name, NUL_MESSAGE))
    if not 0 <= command.max_attempts <= MAX_ATTEMPTS:
        violations.append(FieldViolation("max_attempts", f"between 1 and {MAX_ATTEMPTS}"))
    if command.deadline is not None and not timedelta(0) < command.deadline <= MAX_DEADLINE:
        violations.append(FieldViolation("deadline", "positive, at most 7 days"))
    return violations


def payload_hash(command: TriggerCommand, spec: JobSpec) -> str:
    """A digest of what the request asks for (to detect a request_id reused for another one)."""
    payload = {
        "job": spec.job_kind.value,
        "params": to_json(spec),
        "key": command.concurrency_key,
        "policy": command.policy.value,
        "labels": command.labels,
        "max_attempts": command.max_attempts,
        "deadline": command.deadline.total_seconds() if command.deadline else None,
        "trigger": command.trigger.value,
        "schedule_id": command.schedule_id,
        "nominal_time": command.nominal_time.isoformat() if command.nominal_time else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def to_new_run(
    command: TriggerCommand, now: datetime, default_max_attempts: int, default_deadline: timedelta
) -> NewRun:
    """Validate `command`; raises InvalidArgument with every field violation found."""
    violations = _option_violations(command)
    try:
        spec = validate(command.spec)
    except InvalidArgument as exc:
        raise InvalidArgument([*exc.violations, *violations]) from None
    require(violations)
    deadline = command.deadline or (default_deadline if default_deadline > timedelta(0) else None)
    return NewRun(
        spec=spec,
        concurrency_key=command.concurrency_key or default_concurrency_key(spec),
        policy=command.policy,
        max_attempts=command.max_attempts or default_max_attempts,
        labels=dict(command.labels),
        trigger=command.trigger,
        request_id=command.request_id,
        # Only a request_id's repeat is compared with it: no digest to compute without one.
        payload_hash=payload_hash(command, spec) if command.request_id else "",
        deadline_at=now + deadline if deadline else None,
        schedule_id=command.schedule_id,
        nominal_time=command.nominal_time,
        triggered_by=command.triggered_by,
    )
