"""A tokens file with one token per role, and channels that send them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from common.auth import tokens
from common.auth.credentials import ClientCredentials

#: name -> (scopes, label scope)
ROLES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "admin": (("admin",), {}),
    "reader": (("runs:read",), {}),
    "writer": (("runs:read", "runs:write"), {}),
    "scheduler-ops": (("runs:read", "schedules:write"), {}),
    "crawlers": (("worker",), {}),
    "core": (("runs:read", "runs:write", "schedules:write"), {"team": "core"}),
    "web": (("runs:read", "runs:write"), {"team": "web"}),
}


@dataclass(frozen=True)
class Tokens:
    path: Path
    plain: dict[str, str]

    def channel(self, address: str, role: str | None) -> grpc.aio.Channel:
        """A channel to `address` sending `role`'s token (None: no token)."""
        token = self.plain[role] if role else None
        return ClientCredentials(token=token).channel(address)


def make_tokens(directory: Path) -> Tokens:
    path = directory / "tokens.json"
    plain = {
        name: tokens.create(path, name, scopes, labels) for name, (scopes, labels) in ROLES.items()
    }
    return Tokens(path, plain)
