"""`ghpulse schedules list|get|create|update|pause|resume|delete|run-now`: recurring runs."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, TypeVar

import typer
from google.protobuf.message import Message
from rich.table import Table

from common.client.aio import GhpulseClient
from common.jobs import (
    BackfillLinksSpec,
    CrawlSpec,
    JobSpec,
    PluginJobSpec,
    RecalculateSpec,
    job_to_pb,
)
from common.proto.ghpulse.v1 import schedules_pb2
from ghpulse.cli.output import (
    EXIT_USAGE,
    SCHEDULER_DEFAULT,
    OutputFormat,
    OutputOpt,
    SchedulerOpt,
    console,
    enum_label,
    fail,
    print_json,
    run,
)
from ghpulse.cli.runs import JobName, LabelOpt, ParamOpt, parse_labels, parse_params

schedules_app = typer.Typer(help="Recurring runs.", no_args_is_help=True)
_T = TypeVar("_T")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class OverlapName(StrEnum):
    SKIP = "skip"
    QUEUE = "queue"


def parse_duration(text: str) -> timedelta:
    """`90`, `90s`, `15m`, `1h`, `1d` (one unit); exits 2 otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        fail(f"error: {text!r}: expected a duration like 90s, 15m, 1h or 1d", EXIT_USAGE)
    return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


def _call(address: str, call: Callable[[GhpulseClient], Awaitable[_T]]) -> _T:
    async def go() -> _T:
        async with GhpulseClient(address) as client:
            return await call(client)

    return run(go())


def _when(schedule: schedules_pb2.Schedule, field: str) -> str:
    from ghpulse.cli.tables import when

    return when(getattr(schedule, field), schedule.HasField(field))  # type: ignore[arg-type]


def _timing(schedule: schedules_pb2.Schedule) -> str:
    if schedule.WhichOneof("timing") == "interval":
        from ghpulse.cli.output import human_duration

        return f"every {human_duration(schedule.interval.ToTimedelta())}"
    return f"cron {schedule.cron or '30 * * * *'} {schedule.time_zone or 'UTC'}"


def schedules_table(schedules: list[schedules_pb2.Schedule]) -> Table:
    from ghpulse.cli.tables import job_name

    table = Table("SCHEDULE", "TIMING", "JOB", "OVERLAP", "PAUSED", "NEXT", "LAST RUN")
    for schedule in schedules:
        overlap = schedules_pb2.OverlapPolicy.Name(schedule.overlap)
        table.add_row(
            schedule.id, _timing(schedule), job_name(schedule.template),
            enum_label(overlap, "OVERLAP_POLICY_"), "yes" if schedule.paused else "no",
            _when(schedule, "next_fire_time"), schedule.last_run_id or "-",
        )  # fmt: skip
    return table


def _show(message: Message, schedules: list[schedules_pb2.Schedule], output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        print_json(message)
    else:
        console().print(schedules_table(schedules))


@schedules_app.command("list")
def list_schedules(
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """List schedules."""
    response = _call(scheduler, lambda c: c.list_schedules(page_size=limit))
    _show(response, list(response.schedules), output)


@schedules_app.command("get")
def get_schedule(
    schedule_id: Annotated[str, typer.Argument()],
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Show a schedule and its recent firings."""
    response = _call(scheduler, lambda c: c.get_schedule(schedule_id))
    _show(response, [response.schedule], output)
    if output is OutputFormat.TABLE:
        for firing in response.recent_firings:
            outcome = schedules_pb2.FiringOutcome.Name(firing.outcome)
            typer.echo(
                f"  {firing.nominal_time.ToJsonString()}  "
                f"{enum_label(outcome, 'FIRING_OUTCOME_')}  {firing.run_id or firing.error}"
            )


def _job(
    job: JobName, repositories: list[str], org: str, refresh: bool, steps: str, params: list[str]
) -> JobSpec:
    if job is JobName.PLUGIN:
        return PluginJobSpec(repositories[0] if repositories else "", parse_params(params))
    if job is JobName.RECALCULATE:
        names = tuple(s.strip() for s in steps.split(",") if s.strip())
        return RecalculateSpec(tuple(repositories), org, names)
    if job is JobName.BACKFILL_LINKS:
        return BackfillLinksSpec(repositories[0] if repositories else "")
    return CrawlSpec(tuple(repositories), org, refresh)


CronOpt = Annotated[str, typer.Option(help="Five-field cron, e.g. '0 6 * * 1-5'.")]
EveryOpt = Annotated[str, typer.Option(help="Interval instead of cron: 90s, 15m, 1h, 1d.")]
TimeZoneOpt = Annotated[str, typer.Option(help="IANA zone of the cron.")]
CatchUpOpt = Annotated[
    str, typer.Option(help="Missed ticks within this window coalesce into one run (e.g. 1h).")
]
JitterOpt = Annotated[str, typer.Option(help="Delay each run by up to this much (e.g. 5m).")]


def _set_duration(schedule: schedules_pb2.Schedule, field: str, text: str) -> None:
    getattr(schedule, field).FromTimedelta(parse_duration(text))


@schedules_app.command("create")
def create(
    repositories: Annotated[
        list[str] | None, typer.Argument(help="owner/repo … (--job plugin: the job's name)")
    ] = None,
    schedule_id: Annotated[str, typer.Option("--id", help="Generated if not given.")] = "",
    cron: CronOpt = "",
    every: EveryOpt = "",
    time_zone: TimeZoneOpt = "",
    job: Annotated[JobName, typer.Option(help="What each firing runs.")] = JobName.CRAWL,
    org: Annotated[str, typer.Option(help="Organization to crawl.")] = "",
    refresh: Annotated[bool, typer.Option(help="Crawl: ignore watermarks and ETags.")] = False,
    steps: Annotated[str, typer.Option(help="Recalculate: steps.")] = "upsert,link,classify,export",
    param: ParamOpt = None,
    label: LabelOpt = None,
    overlap: Annotated[OverlapName, typer.Option(help="If the last run is still active.")] = (
        OverlapName.SKIP
    ),
    catch_up_window: CatchUpOpt = "",
    jitter: JitterOpt = "",
    paused: Annotated[bool, typer.Option(help="Create it paused.")] = False,
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Create a schedule (cron or --every) that triggers a job at each tick."""
    schedule = schedules_pb2.Schedule(
        time_zone=time_zone,
        paused=paused,
        overlap=schedules_pb2.OverlapPolicy.Value(f"OVERLAP_POLICY_{overlap.name}"),
    )
    if every:
        _set_duration(schedule, "interval", every)
    elif cron:
        schedule.cron = cron
    for field, text in (("catch_up_window", catch_up_window), ("jitter", jitter)):
        if text:
            _set_duration(schedule, field, text)
    schedule.template.labels.update(parse_labels(label))
    spec = _job(job, repositories or [], org, refresh, steps, param or [])
    job_to_pb(spec, schedule.template)
    created = _call(scheduler, lambda c: c.create_schedule(schedule, schedule_id))
    _show(created, [created], output)


@schedules_app.command("update")
def update(
    schedule_id: Annotated[str, typer.Argument()],
    cron: CronOpt = "",
    every: EveryOpt = "",
    time_zone: TimeZoneOpt = "",
    overlap: Annotated[
        OverlapName | None, typer.Option(help="If the last run is still active.")
    ] = None,
    catch_up_window: CatchUpOpt = "",
    jitter: JitterOpt = "",
    label: LabelOpt = None,
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Change a schedule: exactly the fields given as flags (an UpdateSchedule field mask);
    `--label` replaces all the template's labels."""
    if cron and every:
        fail("error: give --cron or --every, not both", EXIT_USAGE)
    schedule = schedules_pb2.Schedule(id=schedule_id, time_zone=time_zone)
    paths: list[str] = []
    if cron:
        schedule.cron = cron
        paths.append("cron")
    if every:
        _set_duration(schedule, "interval", every)
        paths.append("interval")
    if time_zone:
        paths.append("time_zone")
    if overlap is not None:
        schedule.overlap = schedules_pb2.OverlapPolicy.Value(f"OVERLAP_POLICY_{overlap.name}")
        paths.append("overlap")
    for field, text in (("catch_up_window", catch_up_window), ("jitter", jitter)):
        if text:
            _set_duration(schedule, field, text)
            paths.append(field)
    if label is not None:
        schedule.template.labels.update(parse_labels(label))
        paths.append("template.labels")
    if not paths:
        fail("error: nothing to update: give at least one flag (see --help)", EXIT_USAGE)
    updated = _call(scheduler, lambda c: c.update_schedule(schedule, paths))
    _show(updated, [updated], output)


def _simple(verb: str, help_text: str) -> None:
    def command(
        schedule_id: Annotated[str, typer.Argument()],
        scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
        output: OutputOpt = OutputFormat.TABLE,
    ) -> None:
        method = getattr(GhpulseClient, f"{verb}_schedule")
        result = _call(scheduler, lambda c: method(c, schedule_id))
        _show(result, [result], output)

    command.__doc__ = help_text
    schedules_app.command(verb)(command)


_simple("pause", "Pause a schedule (no firings until resumed).")
_simple("resume", "Resume a paused schedule.")


@schedules_app.command("delete")
def delete(
    schedule_id: Annotated[str, typer.Argument()],
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
) -> None:
    """Delete a schedule (its runs stay)."""
    _call(scheduler, lambda c: c.delete_schedule(schedule_id))
    typer.echo(f"schedule {schedule_id} deleted")


@schedules_app.command("run-now")
def run_now(
    schedule_id: Annotated[str, typer.Argument()],
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Fire a schedule once now (its overlap policy applies)."""
    from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb

    response = _call(scheduler, lambda c: c.run_schedule_now(schedule_id))
    if output is OutputFormat.JSON:
        print_json(response)
        return
    disposition = enum_label(spb.Disposition.Name(response.disposition), "DISPOSITION_")
    typer.echo(f"run {response.run.id} ({disposition})")


def register(app: typer.Typer) -> None:
    app.add_typer(schedules_app, name="schedules")
