"""The caller of the RPC being served, as the auth interceptor established it.

Servicers read it with `current()`; it is set for the duration of each call (a context variable,
so concurrent calls never see each other's caller).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.auth.scopes import ADMIN, RUNS_WRITE, SCOPES, WORKER


@dataclass(frozen=True)
class Caller:
    """Who is calling: a token's name (or a client certificate's subject) and what it may do."""

    #: The token's name or the certificate's subject; "" when authentication is off.
    name: str
    scopes: frozenset[str]
    #: The label scope: the caller sees and triggers only runs carrying all of these labels.
    labels: Mapping[str, str] = field(default_factory=dict)
    authenticated: bool = True

    def has(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes

    def has_any(self, scopes: frozenset[str]) -> bool:
        return any(self.has(scope) for scope in scopes)

    @property
    def worker_only(self) -> bool:
        """A crawler's credential: it may trigger only what crawlers start (backfills)."""
        return self.has(WORKER) and not self.has(RUNS_WRITE)

    def sees(self, labels: Mapping[str, str]) -> bool:
        """Whether a run carrying `labels` is within this caller's label scope."""
        return all(labels.get(key) == value for key, value in self.labels.items())


#: The caller when authentication is off (loopback, or --insecure): everything is allowed.
ANONYMOUS = Caller("", frozenset(SCOPES), {}, authenticated=False)

_CURRENT: contextvars.ContextVar[Caller] = contextvars.ContextVar("ghpulse_caller")


def current() -> Caller:
    """The caller of the RPC being served (`ANONYMOUS` outside an RPC or without auth)."""
    return _CURRENT.get(ANONYMOUS)


def bind(caller: Caller) -> contextvars.Token[Caller]:
    return _CURRENT.set(caller)


def unbind(token: contextvars.Token[Caller]) -> None:
    _CURRENT.reset(token)


def client_key(peer: str) -> str:
    """Whom per-client limits count against: the caller's token name, else the peer's address
    without its port (`peer` is gRPC's `context.peer()`, e.g. `ipv4:127.0.0.1:53211`)."""
    caller = current()
    if caller.authenticated:
        return f"token:{caller.name}"
    return "peer:" + peer.rsplit(":", 1)[0]
