"""`ghpulse trigger …`, `watch`, `runs`, `get`, `cancel`, `retry`, `workers`: SchedulerService."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console

from common.client.aio import GhpulseClient, Triggered
from common.jobs import BackfillLinksSpec, CrawlSpec, JobSpec, PluginJobSpec, RecalculateSpec
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from ghpulse.cli.output import (
    EXIT_USAGE,
    SCHEDULER_DEFAULT,
    OutputFormat,
    OutputOpt,
    SchedulerOpt,
    console,
    fail,
    print_json,
    run,
)

trigger_app = typer.Typer(help="Start a run.", no_args_is_help=True)


class StateName(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobName(StrEnum):
    CRAWL = "crawl"
    RECALCULATE = "recalculate"
    BACKFILL_LINKS = "backfill_links"
    PLUGIN = "plugin"


LabelOpt = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="k=v (repeatable).", show_default=False)
]
WatchOpt = Annotated[bool, typer.Option("--watch", "-w", help="Follow the run to its end.")]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", help="Plugin job: k=v (repeatable; v as JSON if it parses, else text).",
        show_default=False,
    ),
]  # fmt: skip


def parse_labels(items: list[str] | None) -> dict[str, str]:
    """`["team=core"]` -> `{"team": "core"}`; exits 2 on a malformed item."""
    labels = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"error: --label {item!r}: expected key=value", EXIT_USAGE)
        labels[key.strip()] = value.strip()
    return labels


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """`["n=3", "name=x"]` -> `{"n": 3, "name": "x"}`; exits 2 on a malformed item."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"error: --param {item!r}: expected key=value", EXIT_USAGE)
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params


def _console() -> Console:
    return console()


async def _trigger(
    address: str, job: JobSpec, labels: dict[str, str], watch: bool, output: OutputFormat
) -> int:
    from ghpulse.cli.progress import describe_end, exit_code, watch_run

    async with GhpulseClient(address) as client:
        triggered = await client.trigger(job, labels=labels)
        _print_triggered(triggered, output)
        if not watch:
            return 0
        view = await watch_run(client, triggered.run_id, _console(), output)
    if output is OutputFormat.TABLE:
        typer.echo(describe_end(view))
    return exit_code(view.state)


def _print_triggered(triggered: Triggered, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        disposition = spb.Disposition.Value(f"DISPOSITION_{triggered.disposition.upper()}")
        print_json(spb.TriggerRunResponse(run=triggered.run, disposition=disposition))
    else:
        typer.echo(f"run {triggered.run_id} ({triggered.disposition})")


def _finish(code: int) -> None:
    if code:
        raise typer.Exit(code)


@trigger_app.command("crawl")
def trigger_crawl(
    repositories: Annotated[list[str] | None, typer.Argument(help="owner/repo …")] = None,
    org: Annotated[str, typer.Option(help="Every non-archived repository of ORG.")] = "",
    refresh: Annotated[bool, typer.Option(help="Ignore watermarks and ETags.")] = False,
    label: LabelOpt = None,
    watch: WatchOpt = False,
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Crawl pull requests of repositories and/or an organization."""
    job = CrawlSpec(tuple(repositories or ()), org, refresh)
    _finish(run(_trigger(scheduler, job, parse_labels(label), watch, output)))


@trigger_app.command("recalculate")
def trigger_recalculate(
    repositories: Annotated[list[str] | None, typer.Argument(help="owner/repo …")] = None,
    steps: Annotated[
        str, typer.Option(help="Comma-separated subset of upsert,link,classify,export.")
    ] = "upsert,link,classify,export",
    org: Annotated[str, typer.Option(help="Every repository of ORG.")] = "",
    label: LabelOpt = None,
    watch: WatchOpt = False,
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Rebuild derived data from stored raw data (no GitHub request)."""
    names = tuple(s.strip() for s in steps.split(",") if s.strip())
    job = RecalculateSpec(tuple(repositories or ()), org, names)
    _finish(run(_trigger(scheduler, job, parse_labels(label), watch, output)))


@trigger_app.command("backfill-links")
def trigger_backfill_links(
    repository: Annotated[str, typer.Argument(help="owner/repo")],
    label: LabelOpt = None,
    watch: WatchOpt = False,
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Compute the PR -> issue closing links of one repository."""
    job = BackfillLinksSpec(repository)
    _finish(run(_trigger(scheduler, job, parse_labels(label), watch, output)))


@trigger_app.command("plugin")
def trigger_plugin(
    kind: Annotated[str, typer.Argument(help="The plugin job's name, e.g. noop.")],
    param: ParamOpt = None,
    label: LabelOpt = None,
    watch: WatchOpt = False,
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Run a job a crawler plugin adds (GHPULSE_CRAWLER_PLUGINS)."""
    job = PluginJobSpec(kind, parse_params(param))
    _finish(run(_trigger(scheduler, job, parse_labels(label), watch, output)))


def watch(
    run_id: Annotated[str, typer.Argument(help="The run to follow.")],
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Follow a run with a progress bar per step, reconnecting if the scheduler restarts.

    Exit code 0 if the run succeeded, 3 if it failed, 4 if it was cancelled, 1 on errors.
    """
    from ghpulse.cli.progress import describe_end, exit_code, watch_run

    async def follow() -> int:
        async with GhpulseClient(scheduler) as client:
            view = await watch_run(client, run_id, _console(), output)
        if output is OutputFormat.TABLE:
            typer.echo(describe_end(view))
        return exit_code(view.state)

    _finish(run(follow()))


def runs(
    state: Annotated[list[StateName] | None, typer.Option(help="Repeatable.")] = None,
    job: Annotated[list[JobName] | None, typer.Option(help="Repeatable.")] = None,
    label: LabelOpt = None,
    parent: Annotated[
        str, typer.Option(help="Only the child runs of this fan-out parent run.")
    ] = "",
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """List runs, newest first."""
    from ghpulse.cli.tables import runs_table

    states = [runs_pb2.RunState.Value(f"RUN_STATE_{s.name}") for s in state or []]
    jobs = [runs_pb2.JobKind.Value(f"JOB_KIND_{j.name}") for j in job or []]
    labels = parse_labels(label)

    async def fetch() -> spb.ListRunsResponse:
        async with GhpulseClient(scheduler) as client:
            return await client.list_runs(
                states=states, jobs=jobs, labels=labels, parent_run_id=parent, page_size=limit
            )

    response = run(fetch())
    if output is OutputFormat.JSON:
        print_json(response)
    else:
        _console().print(runs_table(response.runs))


def _show_run(value: runs_pb2.Run, output: OutputFormat) -> None:
    from ghpulse.cli.tables import run_table

    if output is OutputFormat.JSON:
        print_json(value)
    else:
        _console().print(run_table(value))


def get(
    run_id: Annotated[str, typer.Argument()],
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Show one run and its steps."""

    async def fetch() -> runs_pb2.Run:
        async with GhpulseClient(scheduler) as client:
            return await client.get_run(run_id)

    _show_run(run(fetch()), output)


def cancel(
    run_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Recorded on the run.")] = "",
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Cancel a pending, queued or running run."""

    async def send() -> runs_pb2.Run:
        async with GhpulseClient(scheduler) as client:
            return await client.cancel(run_id, reason)

    _show_run(run(send()), output)


def retry(
    run_id: Annotated[str, typer.Argument()],
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """Run a FAILED run again from its checkpoints."""

    async def send() -> runs_pb2.Run:
        async with GhpulseClient(scheduler) as client:
            return await client.retry(run_id)

    _show_run(run(send()), output)


def workers(
    scheduler: SchedulerOpt = SCHEDULER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """List the crawlers of the cluster and the scheduler replica each is connected to."""
    from ghpulse.cli.tables import workers_table

    async def fetch() -> spb.ListWorkersResponse:
        async with GhpulseClient(scheduler) as client:
            return await client.workers()

    response = run(fetch())
    if output is OutputFormat.JSON:
        print_json(response)
    else:
        _console().print(workers_table(response.workers))


def register(app: typer.Typer) -> None:
    app.add_typer(trigger_app, name="trigger")
    for command in (watch, runs, get, cancel, retry, workers):
        app.command()(command)
