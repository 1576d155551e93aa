"""`CrawlerApp` start-up: a crawler that fails to start releases what it had already started."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from crawler_service.app import CrawlerApp
from crawler_service.data.store import CrawlerStore
from crawler_service.settings import CrawlerSettings


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


async def test_a_failed_start_stops_the_metrics_server_and_closes_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[CrawlerStore] = []
    aclose = CrawlerStore.aclose

    async def recording_aclose(store: CrawlerStore) -> None:
        closed.append(store)
        await aclose(store)

    monkeypatch.setattr(CrawlerStore, "aclose", recording_aclose)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = CrawlerSettings(
            db=f"sqlite:///{tmp_path}/c.db",
            listen=f"127.0.0.1:{busy.getsockname()[1]}",
            metrics_listen="127.0.0.1:0",
            scheduler_addr="127.0.0.1:1",
        )
        app = CrawlerApp(settings)
        with pytest.raises(RuntimeError, match="bind"):
            await app.start()
    assert app.metrics_server is not None
    assert not _listening(app.metrics_server.address)
    assert app.github is not None and app.github._http.is_closed
    assert app.store is not None and closed == [app.store]
