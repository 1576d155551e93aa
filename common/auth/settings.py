"""The security settings both services share (environment variables, see README "Security")."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.auth.interceptor import AuthPolicy
from common.auth.table import TokenTable
from common.auth.transport import ServerTLS, check_exposure

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


@dataclass(frozen=True)
class ServerSecurity:
    """How a `ServerHost` protects its port."""

    policy: AuthPolicy = field(default_factory=AuthPolicy)
    tls: ServerTLS | None = None
    #: Listening beyond loopback without authentication was asked for explicitly.
    insecure: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def check_exposure(self, listen: str) -> None:
        check_exposure(listen, self.policy.enabled, self.insecure)


class SecuritySettings(BaseSettings):
    """Authentication, TLS and message limits of a gRPC server."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    #: The tokens file; setting it turns authentication on (reloaded when it changes).
    auth_file: str = Field("", validation_alias=_env("GHPULSE_AUTH_FILE"))
    #: Allow a non-loopback listen address without authentication.
    insecure: bool = Field(False, validation_alias=_env("GHPULSE_INSECURE"))
    #: Which services stay open without credentials: `health`, `reflection` (comma-separated).
    auth_open: str = Field("health,reflection", validation_alias=_env("GHPULSE_AUTH_OPEN"))
    tls_cert: str = Field("", validation_alias=_env("GHPULSE_TLS_CERT"))
    tls_key: str = Field("", validation_alias=_env("GHPULSE_TLS_KEY"))
    #: CA of client certificates: clients must present one (mTLS); alone, it identifies a crawler.
    tls_client_ca: str = Field("", validation_alias=_env("GHPULSE_TLS_CLIENT_CA"))
    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES,
        ge=4096,
        le=64 * 1024 * 1024,
        validation_alias=_env("GHPULSE_MAX_MESSAGE_BYTES"),
    )

    def server_security(self) -> ServerSecurity:
        """The server's protection (reads the tokens file: raises `TokenFileError` if invalid)."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("GHPULSE_TLS_CERT and GHPULSE_TLS_KEY go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("GHPULSE_TLS_CLIENT_CA needs GHPULSE_TLS_CERT and GHPULSE_TLS_KEY")
        tls = None
        if self.tls_cert:
            client_ca = Path(self.tls_client_ca) if self.tls_client_ca else None
            tls = ServerTLS(Path(self.tls_cert), Path(self.tls_key), client_ca)
        open_services = {part.strip() for part in self.auth_open.split(",")}
        policy = AuthPolicy(
            tokens=TokenTable(self.auth_file) if self.auth_file else None,
            client_certificates=bool(self.tls_client_ca),
            open_health="health" in open_services,
            open_reflection="reflection" in open_services,
        )
        return ServerSecurity(policy, tls, self.insecure, self.max_message_bytes)
