"""Crawler configuration: environment variables (and equivalent `ghpulse crawler` flags).

Durations are seconds (fractions allowed). Lease TTL and heartbeat interval are the scheduler's:
it sends them when the crawler connects.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from common.auth.credentials import (
    TLS_CA_ENV,
    TLS_CLIENT_CERT_ENV,
    TLS_CLIENT_KEY_ENV,
    TLS_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    ClientCredentials,
)
from common.auth.settings import SecuritySettings


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


def _read_tokens(path: str) -> list[str]:
    """The tokens in the file at `path`, one a line (blank lines ignored); the errors never show
    the file's content."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"GITHUB_TOKEN_FILE {path}: cannot read it ({type(exc).__name__})"
        ) from None
    tokens = [line.strip() for line in lines if line.strip()]
    if not tokens or any(len(token.split()) != 1 for token in tokens):
        raise ValueError(f"GITHUB_TOKEN_FILE {path}: must hold one token a line, at least one")
    return tokens


def _distinct(tokens: list[str]) -> list[str]:
    return list(dict.fromkeys(token for token in tokens if token))


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class CrawlerSettings(SecuritySettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")
    _file_tokens: list[str] = PrivateAttr(default_factory=list)

    listen: str = Field("127.0.0.1:50052", validation_alias=_env("GHPULSE_CRAWLER_LISTEN"))
    db: str = Field("sqlite:///.ghpulse/crawler.db", validation_alias=_env("GHPULSE_CRAWLER_DB"))
    #: PostgreSQL connections of the crawler store, and how many more it may open at peaks; see
    #: README, Connection budget.
    db_pool_size: int = Field(
        5, ge=1, le=200, validation_alias=_env("GHPULSE_CRAWLER_DB_POOL_SIZE")
    )
    db_max_overflow: int = Field(
        5, ge=0, le=200, validation_alias=_env("GHPULSE_CRAWLER_DB_MAX_OVERFLOW")
    )
    scheduler_addr: str = Field("127.0.0.1:50051", validation_alias=_env("GHPULSE_SCHEDULER_ADDR"))
    github_api_url: str = Field(
        "https://api.github.com", validation_alias=_env("GHPULSE_GITHUB_API_URL")
    )
    github_token: SecretStr | None = Field(None, validation_alias=_env("GITHUB_TOKEN"))
    #: More tokens (of other users or App installations), comma-separated: each repository is
    #: served by the first that can see it (README, Several tokens).
    github_tokens: SecretStr | None = Field(None, validation_alias=_env("GITHUB_TOKENS"))
    #: A file holding the GitHub token(s), one a line (e.g. a mounted secret); read only when
    #: neither GITHUB_TOKEN nor GITHUB_TOKENS is set.
    github_token_file: str = Field("", validation_alias=_env("GITHUB_TOKEN_FILE"))
    #: How pull requests are fetched: `auto` (GraphQL behind a free conditional REST probe when a
    #: token is set, else REST), `graphql` (always GraphQL; needs a token) or `rest`.
    github_api: Literal["auto", "graphql", "rest"] = Field(
        "auto", validation_alias=_env("GHPULSE_GITHUB_API")
    )
    export_dir: str = Field(".ghpulse/exports", validation_alias=_env("GHPULSE_EXPORT_DIR"))
    worker_id: str = Field(
        default_factory=_default_worker_id, validation_alias=_env("GHPULSE_CRAWLER_ID")
    )
    #: How many runs this crawler executes at once.
    slots: int = Field(4, ge=1, le=256, validation_alias=_env("GHPULSE_CRAWLER_SLOTS"))
    #: First delay before reconnecting to the scheduler; doubles up to reconnect_backoff_max.
    reconnect_backoff: float = Field(0.2, gt=0, validation_alias=_env("GHPULSE_RECONNECT_BACKOFF"))
    reconnect_backoff_max: float = Field(
        5.0, gt=0, validation_alias=_env("GHPULSE_RECONNECT_BACKOFF_MAX")
    )
    #: At shutdown, how long running steps get to reach a safe point before being handed back.
    shutdown_grace: float = Field(10.0, ge=0, validation_alias=_env("GHPULSE_SHUTDOWN_GRACE"))
    #: Extra job modules (comma-separated `module:function`, called with the job registry).
    plugins: str = Field("", validation_alias=_env("GHPULSE_CRAWLER_PLUGINS"))
    metrics_listen: str = Field("", validation_alias=_env("GHPULSE_CRAWLER_METRICS_LISTEN"))
    migrate: bool = Field(True, validation_alias=_env("GHPULSE_CRAWLER_MIGRATE"))
    #: Seconds before a crawl handed back because another run is fetching one of its
    #: repositories is dispatched again (it holds no crawler slot meanwhile).
    fetch_busy_retry: float = Field(
        15.0, gt=0, le=3600, validation_alias=_env("GHPULSE_FETCH_BUSY_RETRY")
    )
    # GitHub client tunables.
    github_concurrency: int = Field(
        4, ge=1, le=64, validation_alias=_env("GHPULSE_GITHUB_CONCURRENCY")
    )
    github_timeout: float = Field(30.0, gt=0, validation_alias=_env("GHPULSE_GITHUB_TIMEOUT"))
    github_max_retries: int = Field(5, ge=0, validation_alias=_env("GHPULSE_GITHUB_MAX_RETRIES"))
    #: First delay after a 5xx, reset or timeout (jittered, doubling).
    github_retry_backoff: float = Field(
        1.0, ge=0, validation_alias=_env("GHPULSE_GITHUB_RETRY_BACKOFF")
    )
    #: First delay after a secondary rate limit without retry-after (doubling).
    github_secondary_backoff: float = Field(
        60.0, ge=0, validation_alias=_env("GHPULSE_GITHUB_SECONDARY_BACKOFF")
    )
    #: Share each GitHub owner's rate-limit state (remaining, reset, secondary pause) with the
    #: other crawlers of the fleet through the crawler database (see README, GitHub budget).
    github_shared_budget: bool = Field(True, validation_alias=_env("GHPULSE_GITHUB_SHARED_BUDGET"))
    #: At most one write of the shared budget per this many seconds while the budget is healthy
    #: (a secondary pause or a budget of 50 or fewer requests is written at once).
    github_budget_sync_interval: float = Field(
        1.0, ge=0, validation_alias=_env("GHPULSE_GITHUB_BUDGET_SYNC_INTERVAL")
    )

    #: The most requests of one GitHub owner in flight across the whole fleet, counted through
    #: the crawler database (0: no fleet-wide bound, only GHPULSE_GITHUB_CONCURRENCY per crawler).
    github_fleet_concurrency: int = Field(
        0, ge=0, le=1000, validation_alias=_env("GHPULSE_GITHUB_FLEET_CONCURRENCY")
    )

    # Towards the scheduler (WorkerService, and TriggerRun of backfills): a `worker` token.
    token: SecretStr | None = Field(None, validation_alias=_env(TOKEN_ENV))
    token_file: str = Field("", validation_alias=_env(TOKEN_FILE_ENV))
    tls: bool = Field(False, validation_alias=_env(TLS_ENV))
    tls_ca: str = Field("", validation_alias=_env(TLS_CA_ENV))
    tls_client_cert: str = Field("", validation_alias=_env(TLS_CLIENT_CERT_ENV))
    tls_client_key: str = Field("", validation_alias=_env(TLS_CLIENT_KEY_ENV))

    def scheduler_credentials(self) -> ClientCredentials:
        """What the crawler sends the scheduler: its token over TLS if configured."""
        environ = {
            TOKEN_ENV: self.token.get_secret_value() if self.token else "",
            TOKEN_FILE_ENV: self.token_file,
            TLS_ENV: "true" if self.tls else "",
            TLS_CA_ENV: self.tls_ca,
            TLS_CLIENT_CERT_ENV: self.tls_client_cert,
            TLS_CLIENT_KEY_ENV: self.tls_client_key,
        }
        return ClientCredentials.from_env(environ=environ)

    @field_validator("github_api_url")
    @classmethod
    def _no_credentials(cls, url: str) -> str:
        # The message must not echo the URL: it holds a secret.
        if urlsplit(url).netloc.rpartition("@")[1]:
            raise ValueError("must not contain credentials (user:token@); set GITHUB_TOKEN instead")
        return url

    @model_validator(mode="after")
    def _read_token_file(self) -> Self:
        if self.github_token_file and not self.github_secrets:
            self._file_tokens = _read_tokens(self.github_token_file)
        if self.github_api == "graphql" and not self.github_secret:
            raise ValueError("graphql needs GITHUB_TOKEN: GitHub's GraphQL API requires one")
        return self

    @property
    def uses_graphql(self) -> bool:
        """Whether the crawl fetches pull requests through GraphQL (see `github_api`)."""
        return self.github_api != "rest" and self.github_secret is not None

    @property
    def github_secrets(self) -> list[str]:
        """Every configured GitHub token, in order, each once: GITHUB_TOKEN, then GITHUB_TOKENS;
        when neither is set, the lines of GITHUB_TOKEN_FILE."""
        tokens = [self.github_token.get_secret_value() if self.github_token else ""]
        if self.github_tokens is not None:
            tokens += [t.strip() for t in self.github_tokens.get_secret_value().split(",")]
        return _distinct(tokens) or list(self._file_tokens)

    @property
    def github_secret(self) -> str | None:
        """The first GitHub token, None when none is set."""
        return next(iter(self.github_secrets), None)
