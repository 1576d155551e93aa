"""Authentication and authorization of every RPC, in one server interceptor.

A call carries `authorization: Bearer <token>` (checked against the `TokenTable`) or, on an mTLS
port, a verified client certificate (a crawler: scope `worker`, named by its certificate's common
name). The method's scope comes from `scopes.METHOD_SCOPES`. Failures raise `Unauthenticated` /
`PermissionDenied`, which `common.grpc_errors` turns into statuses with ErrorInfo. The caller is
bound for the servicer (`caller.current()`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from common.auth import caller as callers
from common.auth.caller import ANONYMOUS, Caller
from common.auth.scopes import HEALTH_PREFIX, REFLECTION_PREFIXES, WORKER, required
from common.auth.table import TokenTable
from common.errors import PermissionDenied, Unauthenticated
from common.grpc_errors import Streaming, Unary, rewrap

Context = grpc.aio.ServicerContext[Any, Any]
BEARER = "bearer "


@dataclass(frozen=True)
class AuthPolicy:
    """What a server accepts as credentials."""

    #: The tokens (None: no tokens file).
    tokens: TokenTable | None = None
    #: Client certificates are verified (an mTLS port): a certificate alone identifies a crawler.
    client_certificates: bool = False
    open_health: bool = True
    open_reflection: bool = True

    @property
    def enabled(self) -> bool:
        return self.tokens is not None or self.client_certificates

    def is_open(self, method: str) -> bool:
        """Methods anyone may call (health, reflection) unless configured otherwise."""
        if method.startswith(HEALTH_PREFIX):
            return self.open_health
        return self.open_reflection and method.startswith(REFLECTION_PREFIXES)


def _bearer(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            if value[: len(BEARER)].lower() != BEARER:
                raise Unauthenticated("the authorization header must be 'Bearer <token>'")
            return value[len(BEARER) :].strip()
    return None


def _certificate_name(context: Context) -> str | None:
    names = list(context.auth_context().get("x509_common_name") or ())
    return names[0].decode(errors="replace") if names else None


class Authenticator:
    """Establishes and authorizes the caller of one call under `policy`."""

    def __init__(self, policy: AuthPolicy) -> None:
        self.policy = policy

    def caller(self, context: Context) -> Caller:
        """Who calls (raises `Unauthenticated`)."""
        token = _bearer(context)
        if token is not None:
            found = self.policy.tokens.lookup(token) if self.policy.tokens else None
            if found is None:
                raise Unauthenticated("unknown or revoked token")
            return found
        subject = _certificate_name(context) if self.policy.client_certificates else None
        if subject:
            return Caller(subject, frozenset({WORKER}), {})
        raise Unauthenticated(
            "this server requires credentials: send 'authorization: Bearer <token>' "
            "(GHPULSE_TOKEN) or a client certificate"
        )

    def authorize(self, method: str, context: Context) -> Caller:
        """The caller of `method`, if allowed (raises `Unauthenticated` / `PermissionDenied`)."""
        if not self.policy.enabled:
            return ANONYMOUS
        if self.policy.is_open(method):
            return ANONYMOUS
        found = self.caller(context)
        scopes = required(method)
        if not found.has_any(scopes):
            raise PermissionDenied(
                f"token {found.name!r} lacks the scope this method requires",
                method=method.rsplit("/", 1)[-1],
                required=" or ".join(sorted(scopes)),
                token=found.name,
            )
        return found


def _unary(authenticator: Authenticator, method: str) -> Callable[[Unary], Unary]:
    def wrap(behavior: Unary) -> Unary:
        async def call(request: Any, context: Context) -> Any:
            bound = callers.bind(authenticator.authorize(method, context))
            try:
                return await behavior(request, context)
            finally:
                callers.unbind(bound)

        return call

    return wrap


def _stream(authenticator: Authenticator, method: str) -> Callable[[Streaming], Streaming]:
    def wrap(behavior: Streaming) -> Streaming:
        async def call(request: Any, context: Context) -> AsyncIterator[Any]:
            callers.bind(authenticator.authorize(method, context))
            # Not unbound: each call runs in its own task, and an async generator's context
            # cannot be reset across its yields.
            async for item in behavior(request, context):
                yield item

        return call

    return wrap


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Authenticates and authorizes every call before its servicer runs (see module doc). Placed
    inside `ErrorMappingInterceptor`, which turns its errors into statuses."""

    def __init__(self, policy: AuthPolicy) -> None:
        self.authenticator = Authenticator(policy)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        return rewrap(
            handler, _unary(self.authenticator, method), _stream(self.authenticator, method)
        )
