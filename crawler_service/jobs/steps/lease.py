"""The fetch lease of a repository, kept alive for as long as its sweep lives.

The lease (`repository_locks`, `FetchStep.lock_ttl`) keeps concurrent runs and replicas from
sweeping the same repository. A sweep can outlast any TTL — a rate-limit wait alone can take an
hour — so while it runs a background task renews the lease every `interval` seconds, waits
included. Should another run have taken the lease meanwhile (this process stalled past the TTL),
the sweep is cancelled and fails as retryable with `LEASE_LOST`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog

from crawler_service.errors import TransientError

log = structlog.get_logger(__name__)


class LeaseLost(TransientError):
    """Another run took the repository's fetch lease while this sweep was running."""

    def __init__(self, repository: str) -> None:
        super().__init__(f"lost the fetch lease on {repository}", code="LEASE_LOST")


@asynccontextmanager
async def kept_alive(
    repository: str,
    renew: Callable[[], Awaitable[bool]],
    interval: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[None]:
    """Renew the lease with `renew` (False: another holder has it) every `interval` seconds
    until the block ends; raise `LeaseLost` in the block when a renewal finds it taken."""
    sweeping = asyncio.current_task()
    assert sweeping is not None
    lost = False

    async def renew_forever() -> None:
        nonlocal lost
        while True:
            await sleep(interval)
            try:
                held = await renew()
            except Exception as exc:  # a database hiccup: the next renewal may succeed
                log.warning("fetch.lease_renewal_failed", repository=repository, error=str(exc))
                continue
            if not held:
                lost = True
                sweeping.cancel()
                return

    renewer = asyncio.create_task(renew_forever(), name=f"lease:{repository}")
    try:
        yield
    except asyncio.CancelledError:
        if not lost:
            raise
        sweeping.uncancel()
        raise LeaseLost(repository) from None
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
