"""Scopes, and the scope every RPC of the three services requires (the README's table).

`admin` holds every scope. `worker` is the crawlers' scope: WorkerService, the queries, and the
`backfill_links` runs the crawlers' query path starts. A method missing from `METHOD_SCOPES` needs
`admin` (a new RPC is closed until it is given a scope here).
"""

from __future__ import annotations

RUNS_READ = "runs:read"
RUNS_WRITE = "runs:write"
SCHEDULES_WRITE = "schedules:write"
WORKER = "worker"
ADMIN = "admin"
SCOPES = (RUNS_READ, RUNS_WRITE, SCHEDULES_WRITE, WORKER, ADMIN)

_SCHEDULER = "/ghpulse.v1.SchedulerService/"
_PULL_REQUESTS = "/ghpulse.v1.PullRequestService/"

#: Full method name -> the scopes of which the caller needs one.
METHOD_SCOPES: dict[str, frozenset[str]] = {
    **{
        _SCHEDULER + name: frozenset({RUNS_READ})
        for name in ("WatchRun", "GetRun", "ListRuns", "GetSchedule", "ListSchedules")
    },
    # A worker token may trigger only backfill_links runs (checked by the handler).
    _SCHEDULER + "TriggerRun": frozenset({RUNS_WRITE, WORKER}),
    _SCHEDULER + "CancelRun": frozenset({RUNS_WRITE}),
    _SCHEDULER + "RetryRun": frozenset({RUNS_WRITE}),
    _SCHEDULER + "ListWorkers": frozenset({ADMIN}),
    **{
        _SCHEDULER + name: frozenset({SCHEDULES_WRITE})
        for name in (
            "CreateSchedule",
            "UpdateSchedule",
            "DeleteSchedule",
            "PauseSchedule",
            "ResumeSchedule",
            "RunScheduleNow",
        )
    },
    "/ghpulse.v1.WorkerService/Connect": frozenset({WORKER}),
    **{
        _PULL_REQUESTS + name: frozenset({RUNS_READ, WORKER})
        for name in (
            "ListPullRequests",
            "GetRepositoryStats",
            "ListClosingIssues",
            "ListClosingPullRequests",
        )
    },
}

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def required(method: str) -> frozenset[str]:
    """The scopes of which a caller of `method` needs one (`admin` for unknown methods)."""
    return METHOD_SCOPES.get(method, frozenset({ADMIN}))
