"""What a crawler's step report sets on its step, and the data of its event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from scheduler_service.runs.model import EventKind, StepReport, StepState

Row = dict[str, Any]


def report_values(now: datetime, row: Row, report: StepReport) -> tuple[Row, dict[str, Any]]:
    """What `report` sets on its step, and its event's data."""
    data: dict[str, Any] = {"step": report.step}
    if report.kind is EventKind.STEP_STARTED:
        data.update(total=report.total, message=report.message)
        return {
            "state": StepState.RUNNING.value,
            "current": 0,
            "total": report.total,
            "message": report.message,
            "attempt": row["attempt"],
            "started_at": now,
            "finished_at": None,
            "output": None,
        }, data
    if report.kind is EventKind.STEP_PROGRESS:
        data.update(current=report.current, total=report.total, message=report.message)
        return {
            "state": StepState.RUNNING.value,
            "current": report.current,
            "total": report.total,
            "message": report.message,
        }, data
    output = report.output if report.state is StepState.SUCCEEDED else None
    data.update(state=report.state.value, message=report.message)
    if output is not None:
        data["output"] = output
    return {
        "state": report.state.value,
        "finished_at": now,
        "message": report.message,
        "output": output,
    }, data
