"""What clients send: the bearer token (`GHPULSE_TOKEN`, `GHPULSE_TOKEN_FILE` or `--token`) as
`authorization: Bearer …` on every call, over TLS when configured (`GHPULSE_TLS_CA`, `GHPULSE_TLS`,
and `GHPULSE_TLS_CLIENT_CERT`/`_KEY` for mTLS). Used by the typed client, the CLI and the crawler.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

TOKEN_ENV = "GHPULSE_TOKEN"
TOKEN_FILE_ENV = "GHPULSE_TOKEN_FILE"
TLS_ENV = "GHPULSE_TLS"
TLS_CA_ENV = "GHPULSE_TLS_CA"
TLS_CLIENT_CERT_ENV = "GHPULSE_TLS_CLIENT_CERT"
TLS_CLIENT_KEY_ENV = "GHPULSE_TLS_CLIENT_KEY"


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


@dataclass(frozen=True)
class ClientCredentials:
    """A token to send and how to reach the server (plaintext, or TLS with these roots)."""

    token: str | None = None
    tls: bool = False
    #: PEM file of the CA that signed the server's certificate (None: the system's roots).
    ca: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @classmethod
    def from_env(
        cls, token: str | None = None, environ: Mapping[str, str] | None = None
    ) -> ClientCredentials:
        """`token`, else $GHPULSE_TOKEN, else the contents of $GHPULSE_TOKEN_FILE; TLS from the
        GHPULSE_TLS* variables."""
        env = os.environ if environ is None else environ
        token = token or env.get(TOKEN_ENV) or None
        if token is None and env.get(TOKEN_FILE_ENV):
            token = Path(env[TOKEN_FILE_ENV]).read_text(encoding="utf-8").strip() or None
        ca = env.get(TLS_CA_ENV) or None
        tls = ca is not None or env.get(TLS_ENV, "").lower() in ("1", "true", "yes")
        return cls(
            token=token,
            tls=tls,
            ca=ca,
            client_cert=env.get(TLS_CLIENT_CERT_ENV) or None,
            client_key=env.get(TLS_CLIENT_KEY_ENV) or None,
        )

    def channel(self, address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        """An aio channel to `address` that sends the token on every call."""
        interceptors = bearer_interceptors(self.token) if self.token else None
        if not self.tls:
            return grpc.aio.insecure_channel(address, options, interceptors=interceptors)
        credentials = grpc.ssl_channel_credentials(
            _read(self.ca), _read(self.client_key), _read(self.client_cert)
        )
        return grpc.aio.secure_channel(address, credentials, options, interceptors=interceptors)


def _with_token(details: grpc.aio.ClientCallDetails, header: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add("authorization", header)
    return details._replace(metadata=metadata)  # type: ignore[attr-defined, no-any-return]


class _Bearer:
    def __init__(self, header: str) -> None:
        self._header = header

    async def _call(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._header), request)


class _UnaryUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._call(continuation, details, request)


class _UnaryStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._call(continuation, details, request)


class _StreamUnary(_Bearer, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await self._call(continuation, details, requests)


class _StreamStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await self._call(continuation, details, requests)


def bearer_interceptors(token: str) -> list[Any]:
    """Client interceptors adding `authorization: Bearer <token>` to every call of a channel (one
    per kind of call: a grpc.aio channel files each interceptor under one kind only)."""
    header = f"Bearer {token}"
    return [kind(header) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]
