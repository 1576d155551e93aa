"""Scheduler configuration: environment variables (and equivalent `ghpulse scheduler` flags).

Durations are seconds (fractions allowed).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from common.auth.settings import SecuritySettings


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class SchedulerSettings(SecuritySettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    listen: str = Field("127.0.0.1:50051", validation_alias=_env("GHPULSE_SCHEDULER_LISTEN"))
    db: str = Field(
        "sqlite:///.ghpulse/scheduler.db", validation_alias=_env("GHPULSE_SCHEDULER_DB")
    )
    #: The PostgreSQL URL of the one LISTEN connection per process (default: `db`): the database
    #: itself or a pooler in session mode, never transaction pooling. Ignored on SQLite.
    notify_db: str = Field("", validation_alias=_env("GHPULSE_SCHEDULER_NOTIFY_DB"))
    #: How long an assignment's lease lasts without a heartbeat renewing it.
    #: PostgreSQL connections (and database threads) of the run store; see README, Connection
    #: budget.
    db_pool_size: int = Field(
        10, ge=1, le=200, validation_alias=_env("GHPULSE_SCHEDULER_DB_POOL_SIZE")
    )
    #: PostgreSQL connections of the async components (schedules), as many again on overflow.
    db_async_pool_size: int = Field(
        4, ge=1, le=200, validation_alias=_env("GHPULSE_SCHEDULER_DB_ASYNC_POOL_SIZE")
    )
    #: Concurrent TriggerRuns written together, one transaction per flush (README, Runs).
    group_commit: bool = Field(True, validation_alias=_env("GHPULSE_SCHEDULER_GROUP_COMMIT"))
    lease_ttl: float = Field(30.0, gt=0, validation_alias=_env("GHPULSE_LEASE_TTL"))
    #: How often crawlers renew their leases (sent to them when they connect).
    heartbeat_interval: float = Field(
        5.0, gt=0, validation_alias=_env("GHPULSE_HEARTBEAT_INTERVAL")
    )
    #: How long a crawler whose stream broke may take to reconnect and re-attach its runs.
    reconnect_grace: float = Field(15.0, ge=0, validation_alias=_env("GHPULSE_RECONNECT_GRACE"))
    #: How long a running run may take to stop after CancelRun before it is cancelled by force.
    cancel_grace: float = Field(30.0, ge=0, validation_alias=_env("GHPULSE_CANCEL_GRACE"))
    #: First retry delay after a retryable failure; doubles per attempt up to retry_backoff_max.
    retry_backoff: float = Field(5.0, ge=0, validation_alias=_env("GHPULSE_RETRY_BACKOFF"))
    retry_backoff_max: float = Field(
        300.0, ge=0, validation_alias=_env("GHPULSE_RETRY_BACKOFF_MAX")
    )
    max_attempts: int = Field(3, ge=1, le=100, validation_alias=_env("GHPULSE_MAX_ATTEMPTS"))
    #: Default run deadline (0: none); TriggerRun's `deadline` overrides it.
    run_deadline: float = Field(21600.0, ge=0, validation_alias=_env("GHPULSE_RUN_DEADLINE"))
    #: Finished runs older than this are purged (default 30 days).
    retention: float = Field(30 * 86400.0, gt=0, validation_alias=_env("GHPULSE_RETENTION"))
    #: How long a TriggerRun request_id is remembered.
    idempotency_ttl: float = Field(86400.0, gt=0, validation_alias=_env("GHPULSE_IDEMPOTENCY_TTL"))
    #: Period of the sweep for expired leases, due retries, deadlines and other processes' runs.
    sweep_interval: float = Field(1.0, gt=0, validation_alias=_env("GHPULSE_SWEEP_INTERVAL"))
    #: Grace period for in-flight RPCs at shutdown.
    shutdown_grace: float = Field(5.0, ge=0, validation_alias=_env("GHPULSE_SHUTDOWN_GRACE"))
    metrics_listen: str = Field("", validation_alias=_env("GHPULSE_SCHEDULER_METRICS_LISTEN"))
    migrate: bool = Field(True, validation_alias=_env("GHPULSE_SCHEDULER_MIGRATE"))
    #: Comma-separated `owner/name` repositories: seeded as the hourly incremental crawl schedule
    #: `config-repositories` at start-up.
    schedule_repositories: str = Field("", validation_alias=_env("GHPULSE_SCHEDULE_REPOSITORIES"))
    #: Comma-separated organizations: one seeded hourly schedule `config-org-<login>` each.
    schedule_organizations: str = Field("", validation_alias=_env("GHPULSE_SCHEDULE_ORGANIZATIONS"))
    #: The longest a scheduler sleeps between looks at the next due time (changes made through
    #: another replica are seen within it).
    schedule_poll: float = Field(2.0, gt=0, validation_alias=_env("GHPULSE_SCHEDULE_POLL"))
    #: Firings (GetSchedule's history) of ticks older than this are purged (default 7 days).
    schedule_firing_retention: float = Field(
        7 * 86400.0, gt=0, validation_alias=_env("GHPULSE_SCHEDULE_FIRING_RETENTION")
    )
    #: Fire schedules from this process (the RPCs work either way).
    schedules_enabled: bool = Field(True, validation_alias=_env("GHPULSE_SCHEDULES_ENABLED"))
    #: Names this process in the firings it claims and in ListWorkers (default: host name and
    #: process id).
    scheduler_id: str = Field("", validation_alias=_env("GHPULSE_SCHEDULER_ID"))
    #: Where clients reach this replica, as ListWorkers shows it (default: the listen address, a
    #: wildcard host replaced by the host name).
    advertise_addr: str = Field("", validation_alias=_env("GHPULSE_SCHEDULER_ADVERTISE_ADDR"))
    #: How often each replica refreshes its crawlers' rows in the cluster's workers table (rows
    #: three refreshes old are a dead replica's, and dropped).
    workers_refresh: float = Field(10.0, gt=0, validation_alias=_env("GHPULSE_WORKERS_REFRESH"))
    #: The most slots a crawler may declare (more are capped to this).
    max_crawler_slots: int = Field(64, ge=1, validation_alias=_env("GHPULSE_MAX_CRAWLER_SLOTS"))
    #: A crawler whose leases expire this many times within quarantine_window while its stream
    #: stays connected gets no work for quarantine_duration.
    quarantine_losses: int = Field(3, ge=1, validation_alias=_env("GHPULSE_QUARANTINE_LOSSES"))
    quarantine_window: float = Field(
        600.0, gt=0, validation_alias=_env("GHPULSE_QUARANTINE_WINDOW")
    )
    quarantine_duration: float = Field(
        300.0, ge=0, validation_alias=_env("GHPULSE_QUARANTINE_DURATION")
    )
    #: Open WatchRun streams per run, and per client (token name, or peer address without auth).
    max_watchers_per_run: int = Field(
        2000, ge=1, validation_alias=_env("GHPULSE_MAX_WATCHERS_PER_RUN")
    )
    max_watchers_per_client: int = Field(
        2000, ge=1, validation_alias=_env("GHPULSE_MAX_WATCHERS_PER_CLIENT")
    )
    #: TriggerRun calls per second per client (0: unlimited), with bursts of trigger_burst.
    trigger_rate: float = Field(0.0, ge=0, validation_alias=_env("GHPULSE_TRIGGER_RATE"))
    trigger_burst: int = Field(20, ge=1, validation_alias=_env("GHPULSE_TRIGGER_BURST"))

    @staticmethod
    def split(value: str) -> list[str]:
        """The non-empty items of a comma-separated setting."""
        return [item.strip() for item in value.split(",") if item.strip()]
