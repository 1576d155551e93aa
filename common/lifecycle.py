"""Process lifecycle helpers."""

from __future__ import annotations

import asyncio
import signal
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


async def wait_for_signal() -> None:
    """Until SIGTERM or SIGINT arrives."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


class Lifecycle(ABC):
    """A component started and stopped explicitly, usable as `async with component:`."""

    @abstractmethod
    async def start(self) -> None:
        """Acquire resources and begin serving."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop gracefully and release everything `start` acquired."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class Closing(ABC):
    """A resource released explicitly, usable as `async with resource:` (closed on exit)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the resource."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
