"""The one LISTEN connection of a scheduler process (psycopg async, autocommit).

It reads notices as they arrive (so the server never queues them for this session), skips the
process's own, and hands the rest to a `NoticeHandler`. When the connection breaks (the server
restarted, the backend was terminated, the network went away) it reconnects with backoff; the
handler hears `lost()` at once and `resynced()` after every (re)connection, because notices sent
while nobody listened are gone: the handler then catches up from the tables.

The URL must reach a PostgreSQL session that stays the same (LISTEN is session state): the database
itself, or a pooler in session mode — never transaction pooling.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import psycopg
import structlog
from sqlalchemy.engine import make_url

from scheduler_service.cluster.notice import CHANNEL, Notice

log = structlog.get_logger(__name__)
#: Seconds to connect (a hung server is retried with backoff, never waited on for good).
CONNECT_TIMEOUT = 10


class NoticeHandler(Protocol):
    """What the listener tells its process (implemented by `feed.ClusterFeed`)."""

    def notice(self, notice: Notice) -> None:
        """Another process committed a transaction that `notice` describes."""

    def resynced(self) -> None:
        """Listening (again): catch up on whatever changed while not listening."""

    def lost(self) -> None:
        """Not listening any more (until the next `resynced`)."""


def conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (`postgresql+psycopg://` → `postgresql://`)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """`run()` listens until cancelled; `healthy` while a connection listens."""

    def __init__(
        self,
        url: str,
        sender: str,
        handler: NoticeHandler,
        backoff: float = 0.05,
        backoff_max: float = 5.0,
    ) -> None:
        self._conninfo = conninfo(url)
        self._sender = sender
        self._handler = handler
        self._backoff = (backoff, backoff_max)
        self.healthy = False
        #: The listening session's backend pid (0: none), for operators and tests.
        self.backend_pid = 0
        #: Connections opened so far (1 + reconnections).
        self.connections = 0
        #: Set while a connection listens.
        self.listening = asyncio.Event()
        self._was_up = False

    async def run(self) -> None:
        delay = self._backoff[0]
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                log.warning("cluster.listener_lost", error=(str(exc) or repr(exc)).splitlines()[0])
            except Exception:
                # A bug must not end listening for good: log it, reconnect, resync.
                log.exception("cluster.listener_failed")
            finally:
                if self.healthy:
                    self.healthy = False
                    self.listening.clear()
                    self.backend_pid = 0
                    self._handler.lost()
            # Back off only while reconnections fail: a connection that listened resets it.
            delay = self._backoff[0] if self._was_up else min(delay * 2, self._backoff[1])
            self._was_up = False
            await asyncio.sleep(delay)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        ) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.connections += 1
            self.backend_pid = conn.info.backend_pid
            self.healthy = self._was_up = True
            self.listening.set()
            log.info("cluster.listening", channel=CHANNEL, backend_pid=self.backend_pid)
            self._handler.resynced()
            own = Notice.prefix_of(self._sender)
            async for message in conn.notifies():
                # This process's own notices (most of them, on a busy replica) are skipped
                # before their events are decoded.
                if not message.payload.startswith(own):
                    notice = Notice.decode(message.payload)
                    if notice.sender != self._sender:
                        self._handler.notice(notice)
