"""Applying one fault to a running crawl, at a moment drawn by the case."""

from __future__ import annotations

import time
from collections.abc import Callable

from faults.catalog import Fault
from faults.cluster import Cluster
from faults.proxy import TcpProxy


def wait_until(moment: float) -> None:
    time.sleep(max(moment - time.monotonic(), 0.0))


def strike(fault: Fault, cluster: Cluster, proxy: TcpProxy | None, restarts: int) -> str:
    """Do `fault` to `cluster` now; returns what was done (for the raw results)."""
    action: dict[str, Callable[[], str]] = {
        "kill_crawler": lambda: _kill_crawler(cluster, restarts),
        "kill_scheduler": lambda: _kill_scheduler(cluster),
        "db_outage": lambda: _outage(proxy, fault.outage),
    }
    return action[fault.kind]()


def _kill_crawler(cluster: Cluster, restarts: int) -> str:
    assert cluster.crawler is not None
    cluster.kill(cluster.crawler)
    cluster.start_crawler(f"crawler-{restarts + 1}")
    return "crawler killed, another started"


def _kill_scheduler(cluster: Cluster) -> str:
    assert cluster.scheduler is not None
    cluster.kill(cluster.scheduler)
    cluster.start_scheduler()
    return "scheduler killed and restarted"


def _outage(proxy: TcpProxy | None, seconds: float) -> str:
    assert proxy is not None
    proxy.cut()
    time.sleep(seconds)
    proxy.restore()
    return f"database unreachable for {seconds:g} s"
