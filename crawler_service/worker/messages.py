"""Conversion between the worker's domain types and `ghpulse.v1.WorkerService` messages.

Everything the crawler reports leaves through here, so this is where secrets and URL credentials
are redacted from messages, outputs and errors before they reach the scheduler's database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from google.protobuf import json_format, struct_pb2

from common.logging import redact_text, redact_value
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import worker_service_pb2 as pb
from crawler_service.jobs.registry import Output
from crawler_service.worker.runner import AttemptError, AttemptKey, AttemptOutcome, StepOutcome

PROTOCOL_VERSION = 1

_STEP_OUTCOME = {
    StepOutcome.SUCCEEDED: runs_pb2.STEP_STATE_SUCCEEDED,
    StepOutcome.FAILED: runs_pb2.STEP_STATE_FAILED,
    StepOutcome.CANCELLED: runs_pb2.STEP_STATE_CANCELLED,
}
_OUTCOME = {
    AttemptOutcome.SUCCEEDED: pb.ATTEMPT_OUTCOME_SUCCEEDED,
    AttemptOutcome.FAILED: pb.ATTEMPT_OUTCOME_FAILED,
    AttemptOutcome.CANCELLED: pb.ATTEMPT_OUTCOME_CANCELLED,
    AttemptOutcome.RELEASED: pb.ATTEMPT_OUTCOME_RELEASED,
}


def key_from_pb(ref: pb.AttemptRef) -> AttemptKey:
    return AttemptKey(ref.run_id, ref.attempt)


def key_to_pb(key: AttemptKey) -> pb.AttemptRef:
    return pb.AttemptRef(run_id=key.run_id, attempt=key.attempt)


def struct_from(output: Mapping[str, Any]) -> struct_pb2.Struct:
    """`output` as a Struct; raises ValueError/TypeError if it is not JSON-compatible."""
    struct = struct_pb2.Struct()
    struct.update(output)
    return struct


def _restore_ints(value: Any) -> Any:
    # Struct stores every number as a double; steps wrote counts and ids, so give integers back.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _restore_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_restore_ints(item) for item in value]
    return value


def output_from_struct(struct: struct_pb2.Struct) -> Output:
    """A step output carried in a Struct, as the step returned it (integral numbers as ints)."""
    restored: Output = _restore_ints(json_format.MessageToDict(struct))
    return restored


def completed_outputs(assignment: pb.Assignment) -> dict[str, Output]:
    """The outputs of the steps earlier attempts completed, by step name."""
    return {step.name: output_from_struct(step.output) for step in assignment.completed_steps}


def hello(
    worker_id: str, slots: int, in_flight: Iterable[AttemptKey], version: str
) -> pb.ConnectRequest:
    return pb.ConnectRequest(
        hello=pb.WorkerHello(
            worker_id=worker_id,
            protocol_version=PROTOCOL_VERSION,
            slots=slots,
            in_flight=[key_to_pb(key) for key in in_flight],
            version=version,
        )
    )


def heartbeat(in_flight: Iterable[AttemptKey], free_slots: int) -> pb.ConnectRequest:
    refs = [key_to_pb(key) for key in in_flight]
    return pb.ConnectRequest(heartbeat=pb.WorkerHeartbeat(in_flight=refs, free_slots=free_slots))


def drain() -> pb.ConnectRequest:
    return pb.ConnectRequest(drain=pb.WorkerDrain())


def step_started(key: AttemptKey, step: str, total: int, message: str) -> pb.ConnectRequest:
    started = runs_pb2.StepStarted(step=step, total=total, message=message)
    return pb.ConnectRequest(step_report=pb.StepReport(ref=key_to_pb(key), started=started))


def step_progress(
    key: AttemptKey, step: str, current: int, total: int, message: str
) -> pb.ConnectRequest:
    text = redact_text(message)
    progress = runs_pb2.StepProgress(step=step, current=current, total=total, message=text)
    return pb.ConnectRequest(step_report=pb.StepReport(ref=key_to_pb(key), progress=progress))


def step_finished(
    key: AttemptKey, step: str, outcome: StepOutcome, output: Output | None, message: str
) -> pb.ConnectRequest:
    finished = runs_pb2.StepFinished(
        step=step, state=_STEP_OUTCOME[outcome], message=redact_text(message)
    )
    if output is not None:
        finished.output.CopyFrom(struct_from(redact_value(output)))
    return pb.ConnectRequest(step_report=pb.StepReport(ref=key_to_pb(key), finished=finished))


def result(
    key: AttemptKey,
    outcome: AttemptOutcome,
    output: Output | None = None,
    error: AttemptError | None = None,
) -> pb.ConnectRequest:
    message = pb.AttemptResult(ref=key_to_pb(key), outcome=_OUTCOME[outcome])
    if output is not None:
        message.output.CopyFrom(struct_from(redact_value(output)))
    if error is not None:
        text = redact_text(error.message)
        message.error.CopyFrom(
            runs_pb2.RunError(code=error.code, message=text, retryable=error.retryable)
        )
        if outcome is AttemptOutcome.RELEASED and error.retry_after is not None:
            message.retry_after.FromTimedelta(timedelta(seconds=error.retry_after))
    return pb.ConnectRequest(result=message)
