"""Rich tables for runs, workers, pull requests and repository statistics."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message
from rich import box
from rich.table import Table

from common.jobs import PluginJobSpec
from common.proto.ghpulse.v1 import pull_request_service_pb2 as ppb
from common.proto.ghpulse.v1 import runs_pb2, schedules_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from ghpulse.cli.output import enum_label, human_duration

PHASES = ("coding_time", "pickup_time", "review_time", "deploy_time")
SIZE_CLASSES = ("XS", "S", "M", "L", "XL", "XXL")


def when(value: timestamp_pb2.Timestamp, present: bool = True) -> str:
    if not present:
        return "-"
    return value.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")


def span(value: duration_pb2.Duration, present: bool = True) -> str:
    return human_duration(value.ToTimedelta() if present else None)


def run_state(run: runs_pb2.Run) -> str:
    """The state; a fan-out parent's with how many of its children ended (`running 3/40`)."""
    state = enum_label(runs_pb2.RunState.Name(run.state), "RUN_STATE_")
    return f"{state} {run.children_done}/{run.children_total}" if run.children_total else state


def job_name(message: runs_pb2.Run | schedules_pb2.ScheduleTemplate) -> str:
    """The job's kind; `plugin:<name>` for a plugin's job."""
    job = message.WhichOneof("job")
    if job == "plugin":
        return f"plugin:{message.plugin.kind}"
    return job or "-"


def targets(run: runs_pb2.Run) -> str:
    """The repositories or organization a run works on (a plugin job's params)."""
    job = run.WhichOneof("job")
    if job == "backfill_links":
        return run.backfill_links.repository
    if job == "plugin":
        return json.dumps(PluginJobSpec.from_pb(run.plugin).params, sort_keys=True)
    spec = run.crawl if job == "crawl" else run.recalculate
    parts = list(spec.repositories) + ([f"org:{spec.organization}"] if spec.organization else [])
    if job == "crawl" and run.crawl.refresh:
        parts.append("(refresh)")
    return " ".join(parts)


def labels(values: dict[str, str] | Iterable[tuple[str, str]]) -> str:
    pairs = values.items() if isinstance(values, dict) else values
    return ",".join(f"{key}={value}" for key, value in sorted(pairs))


def runs_table(runs: Sequence[runs_pb2.Run]) -> Table:
    table = Table("RUN", "JOB", "TARGETS", "STATE", "ATTEMPT", "CREATED", "LABELS")
    for run in runs:
        table.add_row(
            run.id, job_name(run), targets(run), run_state(run),
            f"{run.attempt}/{run.max_attempts}", when(run.created_at), labels(dict(run.labels)),
        )  # fmt: skip
    return table


def run_table(run: runs_pb2.Run) -> Table:
    """One run: its fields, then one row per step."""
    table = Table("FIELD", "VALUE", show_header=False, box=None)
    rows = [
        ("run", run.id), ("job", job_name(run)), ("targets", targets(run)),
        ("state", run_state(run)), ("attempt", f"{run.attempt}/{run.max_attempts}"),
        ("trigger", enum_label(runs_pb2.Trigger.Name(run.trigger), "TRIGGER_")),
        ("labels", labels(dict(run.labels)) or "-"), ("created", when(run.created_at)),
        ("started", when(run.started_at, run.HasField("started_at"))),
        ("finished", when(run.finished_at, run.HasField("finished_at"))),
        ("worker", run.worker_id or "-"),
    ]  # fmt: skip
    if run.parent_run_id:
        rows.append(("parent", run.parent_run_id))
    if run.children_total:
        rows.append(("children", f"{run.children_done}/{run.children_total} ended"))
    if run.HasField("error"):
        rows.append(("error", f"{run.error.code}: {run.error.message}"))
    for name, value in rows:
        table.add_row(name, value)
    for step in run.steps:
        state = enum_label(runs_pb2.StepState.Name(step.state), "STEP_STATE_")
        progress = f"{step.current}/{step.total}" if step.total else ""
        table.add_row(f"step {step.name}", f"{state} {progress} {step.message}".strip())
    return table


def workers_table(workers: Sequence[spb.Worker]) -> Table:
    table = Table(
        "WORKER", "REPLICA", "SLOTS", "FREE", "RUNS", "CONNECTED", "LAST HEARTBEAT", "DRAINING"
    )  # fmt: skip
    for worker in workers:
        table.add_row(
            worker.id, worker.replica_id or "-", str(worker.slots), str(worker.free_slots),
            " ".join(worker.run_ids) or "-", when(worker.connected_at),
            when(worker.last_heartbeat_at), "yes" if worker.draining else "no",
        )  # fmt: skip
    return table


def _has(message: Message, field: str) -> bool:
    return bool(message.HasField(field))


def pull_requests_table(prs: Sequence[ppb.PullRequest]) -> Table:
    table = Table("#", "TITLE", "STATE", "AUTHOR", "SIZE", "CODING", "PICKUP", "REVIEW", "DEPLOY")
    for pr in prs:
        state = enum_label(ppb.PullRequestState.Name(pr.state), "PULL_REQUEST_STATE_")
        size = ppb.SizeClass.Name(pr.size_class).removeprefix("SIZE_CLASS_")
        phases = [span(getattr(pr, phase), _has(pr, phase)) for phase in PHASES]
        table.add_row(str(pr.number), pr.title[:50], state, pr.author, size, *phases)
    return table


def _sizes(stats: ppb.GetRepositoryStatsResponse) -> dict[str, int]:
    counts = {
        ppb.SizeClass.Name(c.size_class).removeprefix("SIZE_CLASS_"): c.count
        for c in stats.by_size_class
    }
    return {name: counts.get(name, 0) for name in SIZE_CLASSES}


def _states(stats: ppb.GetRepositoryStatsResponse) -> dict[str, int]:
    return {
        enum_label(ppb.PullRequestState.Name(c.state), "PULL_REQUEST_STATE_"): c.count
        for c in stats.by_state
    }


def _p50_p90(phase: ppb.PhaseStats) -> str:
    if not phase.count:
        return "-"
    return f"{span(phase.p50)}/{span(phase.p90)}"


def stats_table(all_stats: Sequence[ppb.GetRepositoryStatsResponse]) -> Table:
    """One row per repository: PR counts, size classes, p50 / p90 of each cycle-time phase."""
    table = Table(title="Pull requests by repository", box=box.SIMPLE_HEAD)
    table.add_column("REPOSITORY")
    for column in ("PRS", "OPEN/MERGED/CLOSED", "XS/S/M/L/XL/XXL"):
        table.add_column(column, justify="right")
    for phase in PHASES:
        table.add_column(f"{phase.removesuffix('_time').upper()} p50/p90", justify="right")
    for stats in all_stats:
        states, sizes = _states(stats), _sizes(stats)
        table.add_row(
            stats.repository, str(stats.total),
            "/".join(str(states.get(s, 0)) for s in ("open", "merged", "closed")),
            "/".join(str(sizes[name]) for name in SIZE_CLASSES),
            *(_p50_p90(getattr(stats, phase)) for phase in PHASES),
        )  # fmt: skip
    return table


def phase_table(stats: ppb.GetRepositoryStatsResponse) -> Table:
    """One repository's phases with p50, p75 and p90."""
    table = Table("PHASE", "PRS", "P50", "P75", "P90", title=stats.repository)
    for phase in PHASES:
        value: ppb.PhaseStats = getattr(stats, phase)
        table.add_row(
            phase.removesuffix("_time"), str(value.count),
            *(span(getattr(value, p)) if value.count else "-" for p in ("p50", "p75", "p90")),
        )  # fmt: skip
    return table
