"""The fake GitHub's HTTP server: a stdlib threading server, in-process or as its own process.

Besides the REST endpoints (also under `/api/v3`, like GitHub Enterprise) it serves GraphQL at
`POST /graphql` (and `/api/graphql`, see `graphql_api`), with its own budget of points. It has a
control API for tests that drive a separate process:
`POST /_fake/faults` (a fault object or a list, see `Fault.from_json`), `DELETE /_fake/faults`,
`GET /_fake/requests`, `DELETE /_fake/requests`, `POST /_fake/rate_limit`
(`{"remaining": 0, "reset_in": 42}`, `"resource": "graphql"` for the GraphQL budget) and
`POST /_fake/touch_pull` (`{"repo": "o/r", "number": 1, "changes": {...}}`).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from ghpulse.testing.fake_github.accounts import Account, Accounts
from ghpulse.testing.fake_github.dataset import Dataset
from ghpulse.testing.fake_github.faults import (
    DOCS,
    PRIMARY_MESSAGE,
    Fault,
    FaultKind,
    Faults,
    RateBudget,
)
from ghpulse.testing.fake_github.graphql_api import DOCS as GRAPHQL_DOCS
from ghpulse.testing.fake_github.graphql_api import answer as graphql_answer
from ghpulse.testing.fake_github.routes import link_header, route

ENTERPRISE_PREFIX = "/api/v3"
GRAPHQL_PATHS = ("/graphql", "/api/graphql")
CONTROL_PREFIX = "/_fake/"
#: How often the serving thread checks for `stop()` (the stdlib default, 0.5 s, slows tests).
POLL_INTERVAL = 0.02


class RequestRecord(NamedTuple):
    """One request the fake answered (status 0: dropped); `at`: its arrival, fake's clock."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float = 0.0
    #: The login of the token that sent it ("" without a token or with the fake's own).
    login: str = ""
    #: When its answer left (the fake's clock): [at, done] is the time it was in flight.
    done: float = 0.0
    #: What the fake's `mark` returned as it arrived (None without one).
    mark: int | None = None


class FakeGitHub:
    """A fake GitHub REST API serving `dataset`; use as `with FakeGitHub(ds) as github:`.

    `latency` delays every answer (seconds). `token`, when set, is required as a Bearer token
    (GraphQL always requires one, like GitHub). `clock` drives the rate-limit resets, so tests can
    move time instead of waiting. `graphql_points` lists the cost of every GraphQL query answered.
    `mark`, when set, is called as each GitHub request arrives (in its serving thread) and logged
    with it: e.g. a database sequence's next value, to order requests among the clients' writes.
    """

    def __init__(
        self,
        dataset: Dataset | str | Path,
        *,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int = 5000,
        graphql_rate_limit: int = 5000,
        token: str | None = None,
        clock: Callable[[], float] = time.time,
        user_login: str = "ghpulse-fake",
        accounts: Mapping[str, Account] | None = None,
        mark: Callable[[], int] | None = None,
    ) -> None:
        self.dataset = dataset if isinstance(dataset, Dataset) else Dataset.load(dataset)
        self.latency = latency
        self.token = token
        #: Tokens besides `token`, each with its own login and repositories (see `accounts`).
        self.accounts = Accounts(token, accounts)
        self.faults = Faults()
        self.clock = clock
        #: The login `GET /user` answers for any token.
        self.user_login = user_login
        self.mark = mark
        self.budget = RateBudget(rate_limit, clock=clock)
        self.graphql_budget = RateBudget(graphql_rate_limit, clock=clock, resource="graphql")
        self.graphql_points: list[int] = []
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._in_flight = 0
        #: The most requests ever answered at once.
        self.max_in_flight = 0
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, like `https://api.github.com`."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def enterprise_url(self) -> str:
        """The base URL in GitHub Enterprise's form (`…/api/v3`)."""
        return self.url + ENTERPRISE_PREFIX

    @property
    def requests(self) -> list[RequestRecord]:
        """The GitHub requests answered so far (control requests excluded), in order."""
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        """Forget the request log (and the in-flight maximum)."""
        with self._lock:
            self._requests.clear()
            self.max_in_flight = self._in_flight

    def start(self) -> FakeGitHub:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(POLL_INTERVAL,),
            name="fake-github",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the `__main__` entry point)."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- request handling (called from the server's threads) -------------------------------------

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _enter(self) -> tuple[float, int | None]:
        """Count a request in flight; returns when it arrived (the fake's clock) and its mark."""
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        return self.clock(), None if self.mark is None else self.mark()

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        name = path[len(CONTROL_PREFIX) :].strip("/")
        if (method, name) == ("POST", "faults"):
            items = body if isinstance(body, list) else [body]
            for item in items:
                self.faults.add(Fault.from_json(item))
            return 201, {"scheduled": len(items)}
        if (method, name) == ("DELETE", "faults"):
            self.faults.clear()
            return 200, {}
        if (method, name) == ("GET", "requests"):
            return 200, [list(r) for r in self.requests]
        if (method, name) == ("DELETE", "requests"):
            self.reset_requests()
            return 200, {}
        if (method, name) == ("POST", "rate_limit"):
            budget = self.graphql_budget if body.get("resource") == "graphql" else self.budget
            budget.set(int(body["remaining"]), body.get("reset_in"))
            return 200, budget.headers()
        if (method, name) == ("POST", "touch_pull"):
            changes = body.get("changes", {})
            return 200, self.dataset.touch_pull(body["repo"], int(body["number"]), **changes)
        return 404, {"message": "Not Found"}


def _handler_for(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.fake = fake
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-github/1"
    #: Idle keep-alive connections end after this many seconds, so handler threads do not pile up.
    timeout = 30
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms per answer.
    disable_nagle_algorithm = True
    fake: FakeGitHub
    #: The GitHub request being answered (path, query), until it is logged.
    _exchange: tuple[str, dict[str, str]] | None = None
    #: When that request arrived (the fake's clock), and its mark.
    _received: tuple[float, int | None] = (0.0, None)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests assert on `FakeGitHub.requests` instead."""

    def do_GET(self) -> None:
        path, query, prefix = self._target()
        if path.startswith(CONTROL_PREFIX):
            self._serve_control("GET", path)
            return
        self._received = self.fake._enter()
        self._exchange = (path, query)
        try:
            self._serve_github(path, query, prefix)
        finally:
            self._finish(0)

    def _finish(self, status: int) -> None:
        """Log a GitHub request before its answer leaves, so a client never outruns the log."""
        if self._exchange is None:
            return
        path, query = self._exchange
        self._exchange = None
        self.fake._leave()
        account = self.fake.accounts.of(self.headers.get("Authorization"))
        login = account.login if account is not None else ""
        at, mark = self._received
        done = self.fake.clock()
        self.fake._record(RequestRecord(self.command, path, query, status, at, login, done, mark))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path not in GRAPHQL_PATHS:
            self._serve_control("POST", self._target()[0])
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self._received = self.fake._enter()
        self._exchange = ("/graphql", {})
        try:
            self._serve_graphql(raw)
        finally:
            self._finish(0)

    def _serve_graphql(self, raw: bytes) -> int:
        fake = self.fake
        if fake.latency:
            time.sleep(fake.latency)
        fault = fake.faults.take("/graphql")
        partial: str | None = None
        if fault is not None and fault.kind is FaultKind.GRAPHQL_ERRORS:
            if not fault.partial:
                return self._send(200, fault.graphql_body(), fake.graphql_budget.headers())
            partial = fault.error_type
        elif fault is not None:
            early = self._apply_fault(fault, fake.graphql_budget)
            if early is not None:
                return early
        header = self.headers.get("Authorization")
        account = fake.accounts.of(header)
        if header is None or account is None:
            message = {
                "message": "This endpoint requires you to be authenticated.",
                "documentation_url": GRAPHQL_DOCS,
            }
            return self._send(401, message, {})
        hidden = fake.accounts.refuses_graphql(account, raw)
        if hidden is not None:
            return self._send(200, hidden, fake.graphql_budget.headers())
        reply = graphql_answer(fake.dataset, fake.graphql_budget, raw, partial_error=partial)
        if reply.cost:
            with fake._lock:
                fake.graphql_points.append(reply.cost)
        return self._send(reply.status, reply.body, fake.graphql_budget.headers())

    def do_DELETE(self) -> None:
        self._serve_control("DELETE", self._target()[0])

    def _target(self) -> tuple[str, dict[str, str], str]:
        parts = urlsplit(self.path)
        path, prefix = parts.path, ""
        if path.startswith(ENTERPRISE_PREFIX + "/"):
            path, prefix = path[len(ENTERPRISE_PREFIX) :], ENTERPRISE_PREFIX
        return path, dict(parse_qsl(parts.query)), prefix

    def _serve_control(self, method: str, path: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not path.startswith(CONTROL_PREFIX):
            self._send(405, {"message": "Method Not Allowed"}, {})
            return
        status, body = self.fake._control(method, path, json.loads(raw) if raw else {})
        self._send(status, body, {})

    def _serve_github(self, path: str, query: dict[str, str], prefix: str) -> int:
        fake = self.fake
        if fake.latency:
            time.sleep(fake.latency)
        fault = fake.faults.take(path)
        if fault is not None:
            early = self._apply_fault(fault, fake.budget)
            if early is not None:
                return early
        account = fake.accounts.of(self.headers.get("Authorization"))
        if account is None:
            return self._send(401, {"message": "Bad credentials", "documentation_url": DOCS}, {})
        if fake.accounts.refuses_rest(account, path) and fake.budget.charge():
            # GitHub's answer to a repository the token cannot see (and it costs a request).
            return self._send(
                404, {"message": "Not Found", "documentation_url": DOCS}, fake.budget.headers()
            )
        return self._answer(path, query, prefix, account.login or fake.user_login)

    def _apply_fault(self, fault: Fault, budget: RateBudget) -> int | None:
        """Apply a fault; the status sent when it answered the request itself."""
        if fault.kind is FaultKind.DROP:
            self._finish(0)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return 0
        if fault.kind is FaultKind.SLOW:
            time.sleep(fault.delay)
        elif fault.kind is FaultKind.PRIMARY:
            budget.set(0, fault.reset_in)
        elif fault.kind is FaultKind.STATUS:
            headers = budget.headers()
            if fault.retry_after is not None:
                headers["retry-after"] = str(fault.retry_after)
            return self._send(fault.status, fault.body(), headers)
        return None

    def _answer(self, path: str, query: dict[str, str], prefix: str, login: str) -> int:
        fake = self.fake
        rate = fake.budget.headers()
        core = {k.removeprefix("x-ratelimit-"): v for k, v in rate.items()}
        with fake.dataset.lock:
            user = login if self.headers.get("Authorization") else None
            answer = route(fake.dataset, path, query, core, user)
            body = _encode(answer.body)
        etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
        host = self.headers.get("Host") or fake.url.removeprefix("http://")
        headers = {"ETag": etag, **link_header(answer, f"http://{host}{prefix}{path}", query)}
        if answer.status == 200 and _etag_matches(self.headers.get("If-None-Match"), etag):
            # A 304 is free, like on GitHub.
            return self._send(304, None, {**headers, **fake.budget.headers()})
        if answer.charged and not fake.budget.charge():
            message = {"message": PRIMARY_MESSAGE, "documentation_url": DOCS}
            return self._send(403, message, fake.budget.headers())
        return self._send(answer.status, body, {**headers, **fake.budget.headers()})

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> int:
        payload = b"" if status == 304 else body if isinstance(body, bytes) else _encode(body)
        self._finish(status)
        self.send_response(status)
        if status != 304:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        return status


def _encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    return etag in candidates or "*" in candidates
