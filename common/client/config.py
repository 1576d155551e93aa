"""Channel settings shared by the typed clients: addresses, the retry service config, options.

An address is any gRPC target: `host:port`, `dns:///host:port` (every address the name resolves
to, e.g. a Kubernetes headless service) or `ipv4:10.0.0.1:50051,10.0.0.2:50051` (a fixed list of
replicas). Calls are spread over the target's addresses round-robin, and a replica that goes away
is skipped by the next call (or the next WatchRun resumption).
"""

from __future__ import annotations

import json
import os
from typing import Any

from common.keepalive import Keepalive

SCHEDULER_ADDR_ENV = "GHPULSE_SCHEDULER_ADDR"
CRAWLER_ADDR_ENV = "GHPULSE_CRAWLER_ADDR"
DEFAULT_SCHEDULER_ADDR = "127.0.0.1:50051"
DEFAULT_CRAWLER_ADDR = "127.0.0.1:50052"

SCHEDULER_SERVICE = "ghpulse.v1.SchedulerService"
PULL_REQUEST_SERVICE = "ghpulse.v1.PullRequestService"

_RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    # Only UNAVAILABLE: the call never reached a servicer (or the server is restarting), so a
    # repeat cannot double an effect. TriggerRun is covered because the client always sets
    # request_id, which the scheduler deduplicates.
    "retryableStatusCodes": ["UNAVAILABLE"],
}

#: The default gRPC service config: retry UNAVAILABLE on every method except RetryRun, whose
#: repeat after a lost answer would fail (the first call already moved the run out of FAILED).
SERVICE_CONFIG: dict[str, Any] = {
    # Every address of the target, not only the first that answers (gRPC's pick_first).
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": SCHEDULER_SERVICE}, {"service": PULL_REQUEST_SERVICE}],
            "retryPolicy": _RETRY_POLICY,
        },
        {"name": [{"service": SCHEDULER_SERVICE, "method": "RetryRun"}]},
    ],
}


def replica_options(keepalive: Keepalive | None = None) -> list[tuple[str, Any]]:
    """Options of every channel towards a service that may run as several replicas: round-robin
    over the target's addresses (used when the service config names no policy) and keepalive
    pings (`Keepalive.from_env()` by default)."""
    return [
        ("grpc.lb_policy_name", "round_robin"),
        *(keepalive or Keepalive.from_env()).client_options(),
    ]


def channel_options(
    service_config: dict[str, Any] | None = None, keepalive: Keepalive | None = None
) -> list[tuple[str, Any]]:
    """gRPC channel options: the retry service config, round-robin over the target's addresses,
    keepalive pings (`Keepalive.from_env()` by default) and quick reconnects (a restarted local
    scheduler is found again within about a second, not after grpc's default minute-long backoff).
    """
    config = SERVICE_CONFIG if service_config is None else service_config
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(config)),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        *replica_options(keepalive),
    ]


def scheduler_addr(given: str | None = None) -> str:
    """`given`, else $GHPULSE_SCHEDULER_ADDR, else 127.0.0.1:50051."""
    return given or os.environ.get(SCHEDULER_ADDR_ENV) or DEFAULT_SCHEDULER_ADDR


def crawler_addr(given: str | None = None) -> str:
    """`given`, else $GHPULSE_CRAWLER_ADDR, else 127.0.0.1:50052."""
    return given or os.environ.get(CRAWLER_ADDR_ENV) or DEFAULT_CRAWLER_ADDR
