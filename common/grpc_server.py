"""Hosting a gRPC aio server the same way in both services: the error-mapping and auth
interceptors, TLS, health, reflection (grpcurl works without proto files) and graceful shutdown."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection

from common.auth.interceptor import AuthInterceptor
from common.auth.settings import ServerSecurity
from common.grpc_errors import ErrorMappingInterceptor
from common.keepalive import Keepalive
from common.lifecycle import Lifecycle

log = structlog.get_logger(__name__)

#: RPCs gRPC's core may hold before the server's event loop picks them up. Past its default soft
#: limit (1,000) the core drops new calls at random, as a bare CANCELLED with nothing logged: a
#: burst of 2,000 WatchRun streams lost one in ten. Soft and hard limit equal: no random drops;
#: real limits (watchers per run and per client) refuse with RESOURCE_EXHAUSTED in the servicer.
MAX_PENDING_RPCS = 1 << 16


class ServerHost(Lifecycle):
    """An aio gRPC server listening on `listen`, with health and reflection for `service_names`.

    Use as `async with ServerHost(...) as host:`; leaving the block shuts down gracefully: health
    goes NOT_SERVING first, then in-flight RPCs get `grace` seconds before being cancelled.
    """

    def __init__(
        self,
        listen: str,
        service_names: Sequence[str],
        register: Callable[[grpc.aio.Server], None],
        grace: float = 5.0,
        options: Sequence[tuple[str, object]] = (),
        security: ServerSecurity | None = None,
        keepalive: Keepalive | None = None,
    ) -> None:
        self._listen = listen
        self._service_names = tuple(service_names)
        self._grace = grace
        self.security = security or ServerSecurity()
        limits: list[tuple[str, object]] = [
            # Without this gRPC sets SO_REUSEPORT: a second server on a busy port would share it
            # (half the connections each) instead of failing.
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", self.security.max_message_bytes),
            *(keepalive or Keepalive.from_env()).server_options(),
            ("grpc.server.max_pending_requests", MAX_PENDING_RPCS),
            ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_RPCS),
        ]
        self.server = grpc.aio.server(
            # The error mapping outermost: it turns the auth interceptor's refusals into statuses.
            interceptors=[ErrorMappingInterceptor(), AuthInterceptor(self.security.policy)],
            options=[*limits, *options],
        )
        register(self.server)
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (
                *self._service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )
        self.port = 0

    @property
    def address(self) -> str:
        host = self._listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def check_exposure(self) -> None:
        """Refuse (`ExposureRefused`) a non-loopback address without authentication unless
        insecure was asked for: for a service to call first thing at start-up, so that a refused
        configuration fails at once, not after its migrations."""
        self.security.check_exposure(self._listen)

    async def start(self) -> None:
        self.security.check_exposure(self._listen)
        tls = self.security.tls
        if tls is None:
            self.port = self.server.add_insecure_port(self._listen)
        else:
            self.port = self.server.add_secure_port(self._listen, tls.credentials())
        if self.port == 0:
            raise OSError(f"cannot listen on {self._listen}")
        await self.server.start()
        for name in ("", *self._service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "server.started",
            address=self.address,
            services=list(self._service_names),
            tls=tls is not None,
            auth=self.security.policy.enabled,
        )

    async def mark_not_serving(self) -> None:
        for name in ("", *self._service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self, grace: float | None = None) -> None:
        await self.mark_not_serving()
        await self.server.stop(self._grace if grace is None else grace)
        log.info("server.stopped", address=self.address)
