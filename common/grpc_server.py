"""Hosting a gRPC aio server the same way in both services: the error-mapping interceptor, health,
reflection (grpcurl works without proto files) and graceful shutdown."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection

from common.grpc_errors import ErrorMappingInterceptor
from common.lifecycle import Lifecycle

log = structlog.get_logger(__name__)


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
    ) -> None:
        self._listen = listen
        self._service_names = tuple(service_names)
        self._grace = grace
        self.server = grpc.aio.server(
            interceptors=[ErrorMappingInterceptor()], options=list(options)
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

    async def start(self) -> None:
        self.port = self.server.add_insecure_port(self._listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self._listen}")
        await self.server.start()
        for name in ("", *self._service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("server.started", address=self.address, services=list(self._service_names))

    async def mark_not_serving(self) -> None:
        for name in ("", *self._service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self, grace: float | None = None) -> None:
        await self.mark_not_serving()
        await self.server.stop(self._grace if grace is None else grace)
        log.info("server.stopped", address=self.address)
