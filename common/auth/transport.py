"""The server side of transport security: TLS (and mTLS) credentials, and the refusal to listen
beyond loopback without authentication."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc

INSECURE_ENV = "GHPULSE_INSECURE"


class ExposureRefused(RuntimeError):
    """Listening on a non-loopback address without authentication needs an explicit opt-in."""


@dataclass(frozen=True)
class ServerTLS:
    """Certificate and key (PEM files) of the server; with `client_ca`, clients must present a
    certificate signed by it (mTLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        roots = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=roots,
            # gRPC Python can only require a client certificate or not ask for one.
            require_client_auth=roots is not None,
        )


def host_of(listen: str) -> str:
    host = listen.rsplit(":", 1)[0] if ":" in listen else listen
    return host.strip("[]")


def is_loopback(listen: str) -> bool:
    """Whether `listen` (host:port) binds a loopback address only."""
    host = host_of(listen)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, '0.0.0.0' and '[::]' are reachable from elsewhere


def check_exposure(listen: str, authenticated: bool, insecure: bool) -> None:
    """Raise `ExposureRefused` for a non-loopback bind without authentication, unless `insecure`
    (`--insecure`, GHPULSE_INSECURE=true) says it is meant."""
    if authenticated or insecure or is_loopback(listen):
        return
    raise ExposureRefused(
        f"refusing to listen on {listen} without authentication: set GHPULSE_AUTH_FILE "
        f"(see 'ghpulse tokens create'), or pass --insecure ({INSECURE_ENV}=true) to allow it"
    )
