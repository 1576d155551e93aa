"""Protobuf <-> domain conversion for `ghpulse.v1.WorkerService` (the crawler protocol)."""

from __future__ import annotations

from datetime import timedelta

from common import pb
from common.jobs import job_to_pb
from common.proto.ghpulse.v1 import scheduler_service_pb2, worker_service_pb2
from scheduler_service.api.run_messages import STEP_STATES, key_of
from scheduler_service.cluster.registry import WorkerEntry
from scheduler_service.orchestration.dispatch import HeartbeatAcked, Outgoing, Welcome
from scheduler_service.runs.model import (
    AttemptRef,
    AttemptResult,
    EventKind,
    Outcome,
    Run,
    RunError,
    StepReport,
    StepState,
)
from scheduler_service.runs.store import StopKind, StopRequest

#: The Connect protocol this scheduler speaks, and the oldest a crawler may still speak to it.
#: A release that changes the protocol raises PROTOCOL_VERSION and keeps the previous one within
#: [MIN_PROTOCOL_VERSION, PROTOCOL_VERSION] for at least one release, so that schedulers can be
#: upgraded before crawlers (README "Rolling upgrades").
PROTOCOL_VERSION = 1
MIN_PROTOCOL_VERSION = 1
#: What a hello without `protocol_version` speaks: the first protocol (wave 1), whose crawlers
#: may not set the field.
UNVERSIONED_PROTOCOL = 1
#: The longest a crawler may ask a released run to wait (AttemptResult.retry_after).
MAX_RETRY_AFTER = timedelta(days=1)
ATTEMPT_OUTCOMES = {
    worker_service_pb2.ATTEMPT_OUTCOME_SUCCEEDED: Outcome.SUCCEEDED,
    worker_service_pb2.ATTEMPT_OUTCOME_FAILED: Outcome.FAILED,
    worker_service_pb2.ATTEMPT_OUTCOME_CANCELLED: Outcome.CANCELLED,
    worker_service_pb2.ATTEMPT_OUTCOME_RELEASED: Outcome.RELEASED,
}


def ref_from_pb(message: worker_service_pb2.AttemptRef) -> AttemptRef:
    return AttemptRef(message.run_id, message.attempt)


def ref_to_pb(ref: AttemptRef) -> worker_service_pb2.AttemptRef:
    return worker_service_pb2.AttemptRef(run_id=ref.run_id, attempt=ref.attempt)


def report_from_pb(message: worker_service_pb2.StepReport) -> StepReport | None:
    """The step report, or None if it is malformed (it is then ignored)."""
    which = message.WhichOneof("kind")
    if which == "started":
        started = message.started
        return StepReport(
            EventKind.STEP_STARTED, started.step, total=started.total, message=started.message
        )
    if which == "progress":
        progress = message.progress
        return StepReport(
            EventKind.STEP_PROGRESS,
            progress.step,
            current=progress.current,
            total=progress.total,
            message=progress.message,
        )
    if which == "finished":
        finished = message.finished
        state = key_of(STEP_STATES, finished.state) or StepState.FAILED
        output = pb.from_struct(finished.output) if finished.HasField("output") else None
        return StepReport(
            EventKind.STEP_FINISHED,
            finished.step,
            state=state,
            message=finished.message,
            output=output,
        )
    return None


def result_from_pb(message: worker_service_pb2.AttemptResult) -> AttemptResult:
    outcome = ATTEMPT_OUTCOMES.get(message.outcome, Outcome.FAILED)
    error = None
    if message.HasField("error"):
        error = RunError(message.error.code, message.error.message, message.error.retryable)
    output = pb.from_struct(message.output) if message.HasField("output") else None
    retry_after = None
    if outcome is Outcome.RELEASED and message.HasField("retry_after"):
        # Bounded: a crawler cannot park a run for longer than a day.
        retry_after = min(max(message.retry_after.ToTimedelta(), timedelta(0)), MAX_RETRY_AFTER)
    return AttemptResult(outcome, output, error, retry_after)


def _assignment(run: Run) -> worker_service_pb2.Assignment:
    message = worker_service_pb2.Assignment(
        ref=ref_to_pb(run.ref),
        completed_steps=[
            worker_service_pb2.CompletedStep(name=step.name, output=pb.struct(step.output))
            for step in run.completed_steps()
        ],
        lease_expires_at=pb.timestamp(run.lease_expires_at),
        deadline_at=pb.timestamp(run.deadline_at),
    )
    job_to_pb(run.spec, message)
    return message


def outgoing_to_pb(
    item: Outgoing, lease_ttl: float, heartbeat_interval: float
) -> worker_service_pb2.ConnectResponse:
    if isinstance(item, Run):
        return worker_service_pb2.ConnectResponse(assignment=_assignment(item))
    if isinstance(item, StopRequest):
        if item.kind is StopKind.CANCEL:
            cancel = worker_service_pb2.CancelAttempt(ref=ref_to_pb(item.ref), reason=item.reason)
            return worker_service_pb2.ConnectResponse(cancel=cancel)
        abandon = worker_service_pb2.AbandonAttempt(ref=ref_to_pb(item.ref), reason=item.reason)
        return worker_service_pb2.ConnectResponse(abandon=abandon)
    if isinstance(item, HeartbeatAcked):
        ack = worker_service_pb2.HeartbeatAck(
            renewed=[ref_to_pb(r) for r in item.renewed],
            lease_expires_at=pb.timestamp(item.lease_expires_at),
        )
        return worker_service_pb2.ConnectResponse(heartbeat_ack=ack)
    return worker_service_pb2.ConnectResponse(welcome=_welcome(item, lease_ttl, heartbeat_interval))


def _welcome(
    item: Welcome, lease_ttl: float, heartbeat_interval: float
) -> worker_service_pb2.WorkerWelcome:
    return worker_service_pb2.WorkerWelcome(
        protocol_version=PROTOCOL_VERSION,
        reattached=[ref_to_pb(r) for r in item.reattached],
        abandoned=[ref_to_pb(r) for r in item.abandoned],
        lease_ttl=pb.duration(timedelta(seconds=lease_ttl)),
        heartbeat_interval=pb.duration(timedelta(seconds=heartbeat_interval)),
        lease_expires_at=pb.timestamp(item.lease_expires_at),
    )


def rejected(reason: str) -> worker_service_pb2.ConnectResponse:
    return worker_service_pb2.ConnectResponse(
        rejected=worker_service_pb2.ConnectRejected(
            reason=reason, supported_protocol_version=PROTOCOL_VERSION
        )
    )


def worker_to_pb(entry: WorkerEntry) -> scheduler_service_pb2.Worker:
    """A crawler of the cluster as ListWorkers shows it."""
    return scheduler_service_pb2.Worker(
        id=entry.worker_id,
        slots=entry.slots,
        free_slots=entry.free_slots,
        run_ids=list(entry.run_ids),
        connected_at=pb.timestamp(entry.connected_at),
        last_heartbeat_at=pb.timestamp(entry.heartbeat_at),
        draining=entry.draining,
        version=entry.version,
        replica_id=entry.replica_id,
        replica_address=entry.replica_address,
        protocol_version=entry.protocol_version,
    )
