"""Live progress bars per step of a run, fed from WatchRun, and the exit code of a watched run."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from common.client.aio import GhpulseClient
from common.client.watch import RunView, StepView
from common.proto.ghpulse.v1 import runs_pb2
from ghpulse.cli.output import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_RUN_CANCELLED,
    EXIT_RUN_FAILED,
    OutputFormat,
    enum_label,
    print_json,
)

_ICONS: dict[int, str] = {
    runs_pb2.STEP_STATE_PENDING: "[dim]·[/]",
    runs_pb2.STEP_STATE_RUNNING: "[cyan]▶[/]",
    runs_pb2.STEP_STATE_SUCCEEDED: "[green]✓[/]",
    runs_pb2.STEP_STATE_FAILED: "[red]✗[/]",
    runs_pb2.STEP_STATE_CANCELLED: "[yellow]■[/]",
}
_DONE = {runs_pb2.STEP_STATE_SUCCEEDED, runs_pb2.STEP_STATE_FAILED, runs_pb2.STEP_STATE_CANCELLED}


def exit_code(state: int) -> int:
    """The CLI exit code for a run that ended in `state` (see `ghpulse.cli.output`)."""
    if state == runs_pb2.RUN_STATE_SUCCEEDED:
        return EXIT_OK
    if state == runs_pb2.RUN_STATE_FAILED:
        return EXIT_RUN_FAILED
    if state == runs_pb2.RUN_STATE_CANCELLED:
        return EXIT_RUN_CANCELLED
    return EXIT_ERROR


def state_label(state: int) -> str:
    return enum_label(runs_pb2.RunState.Name(state), "RUN_STATE_")  # type: ignore[arg-type]


class StepBars:
    """One progress bar per step; `update(view)` redraws them from a `RunView`."""

    def __init__(self, console: Console, title: str = "") -> None:
        self._title = title
        self.progress = Progress(
            TextColumn("{task.fields[icon]} {task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[dim]{task.fields[note]}"),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> StepBars:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def update(self, view: RunView) -> None:
        for step in view.steps.values():
            self._update_step(step)

    def _update_step(self, step: StepView) -> None:
        total: float | None = step.total or None
        completed = step.current
        if step.state == runs_pb2.STEP_STATE_SUCCEEDED:
            # A finished step is full even if it never reported a total.
            total = total or 1
            completed = int(total)
        icon, note = _ICONS.get(step.state, "?"), step.message[:60]
        if step.name not in self._tasks:
            self._tasks[step.name] = self.progress.add_task(
                step.name, total=total, icon=icon, note=note
            )
        task = self._tasks[step.name]
        self.progress.update(task, total=total, completed=completed, icon=icon, note=note)
        if step.state in _DONE:
            self.progress.stop_task(task)


async def watch_run(
    client: GhpulseClient, run_id: str, console: Console, output: OutputFormat
) -> RunView:
    """Follow the run to its end: bars for people, or each message as JSON (as grpcurl prints)."""
    view = RunView(run_id)
    if output is OutputFormat.JSON:
        async for message in client.watch(run_id):
            view.apply(message)
            print_json(message)
        return view
    with StepBars(console) as bars:
        async for message in client.watch(run_id):
            view.apply(message)
            bars.update(view)
    return view


def describe_end(view: RunView) -> str:
    """`run run_x succeeded` or `run run_x failed: CODE: message`."""
    line = f"run {view.run_id} {state_label(view.state)}"
    if view.error is not None and view.error.code:
        line += f": {view.error.code}: {view.error.message}"
    return line
