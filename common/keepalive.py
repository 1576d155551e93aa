"""HTTP/2 keepalive for the long streams (Connect, WatchRun) on both ends of every channel.

A load balancer or NAT drops a TCP connection that stays quiet for a few minutes; a WatchRun of a
quiet run or an idle crawler's Connect stream can be that quiet. Clients therefore ping every
`time` seconds (even without a call in flight) and give up on a connection whose ping is not
answered within `timeout`; servers accept such pings (down to `MIN_CLIENT_PING_INTERVAL`) and
ping their idle clients too, so a vanished crawler is noticed without waiting for its lease.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KEEPALIVE_TIME_ENV = "GHPULSE_KEEPALIVE_TIME"
KEEPALIVE_TIMEOUT_ENV = "GHPULSE_KEEPALIVE_TIMEOUT"
#: The shortest ping interval a server tolerates from a client (gRPC answers faster pings with
#: GOAWAY "too_many_pings"); a client's `time` is never set below it.
MIN_CLIENT_PING_INTERVAL = 5.0


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


@dataclass(frozen=True)
class Keepalive:
    """Ping every `time` seconds; drop the connection if a ping stays unanswered `timeout` s."""

    time: float = 30.0
    timeout: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keepalive:
        """$GHPULSE_KEEPALIVE_TIME (default 30) and $GHPULSE_KEEPALIVE_TIMEOUT (default 10)."""
        env = os.environ if environ is None else environ
        time = float(env.get(KEEPALIVE_TIME_ENV) or cls.time)
        timeout = float(env.get(KEEPALIVE_TIMEOUT_ENV) or cls.timeout)
        if timeout <= 0:
            raise ValueError(f"{KEEPALIVE_TIMEOUT_ENV} must be positive")
        return cls(max(time, MIN_CLIENT_PING_INTERVAL), timeout)

    def client_options(self) -> list[tuple[str, Any]]:
        """Channel options of a client (the typed client, the CLI, a crawler's scheduler link)."""
        return [
            ("grpc.keepalive_time_ms", _ms(self.time)),
            ("grpc.keepalive_timeout_ms", _ms(self.timeout)),
            ("grpc.keepalive_permit_without_calls", 1),
            # Unlimited pings while a stream is open but silent (gRPC's default stops at 2).
            ("grpc.http2.max_pings_without_data", 0),
        ]

    def server_options(self) -> list[tuple[str, Any]]:
        """Server options: accept the clients' pings, and ping idle clients at the same pace."""
        return [
            ("grpc.keepalive_time_ms", _ms(self.time)),
            ("grpc.keepalive_timeout_ms", _ms(self.timeout)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(MIN_CLIENT_PING_INTERVAL)),
        ]
