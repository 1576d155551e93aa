"""A malicious GitHub over real HTTP: its answers point the crawler elsewhere (a `Link: next` to
another host) and name repositories like paths (`../escaped`). A second server, `elsewhere`,
records every request that reaches it, with its headers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorder:
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def _repo(full_name: str) -> dict[str, Any]:
    return {"full_name": full_name, "archived": False, "default_branch": "main"}


def _handler(elsewhere: str, recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            recorder.requests.append((self.path, dict(self.headers.items())))
            path = self.path.split("?", 1)[0]
            if path == "/repos/evil/linked":
                self._json(_repo("evil/linked"))
            elif path == "/repos/evil/linked/pulls":
                link = f'<{elsewhere}/repos/evil/linked/pulls?page=2>; rel="next"'
                self._json([], {"link": link})
            elif path == "/orgs/evil-org/repos":
                self._json([_repo("../escaped"), _repo("evil-org/renamed")])
            elif path == "/repos/evil-org/renamed":
                self._json(_repo("../escaped"))
            else:
                self._json([] if path.endswith(("/pulls", "/releases")) else _repo(path[7:]))

    return Handler


@contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def evil_github() -> Iterator[tuple[str, Recorder]]:
    """(the malicious API's URL, what reached the other host)."""
    reached_elsewhere = Recorder()
    seen = Recorder()
    # The other host must exist while the API runs: start it first, then the API pointing to it.
    with (
        _serve(_recording(reached_elsewhere)) as elsewhere_url,
        _serve(_handler(elsewhere_url, seen)) as api_url,
    ):
        yield api_url, reached_elsewhere


def _recording(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            recorder.requests.append((self.path, dict(self.headers.items())))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

    return Handler
