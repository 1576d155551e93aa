"""compose.yaml read as a topology to start as local processes: its services, their commands and
environments, with the compose hostnames, ports, secrets and volumes mapped to this machine (free
local ports, files in a temporary directory, a fresh PostgreSQL database). What the acceptance test
starts is therefore what compose.yaml says, not a copy that could drift from it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import ROOT, free_port

COMPOSE = ROOT / "compose.yaml"
LOOPBACK = "127.0.0.1"
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
_POSTGRES_URL = re.compile(r"postgresql://[^@/\s]*@postgres(?::\d+)?/\w+")
_DNS_TARGET = re.compile(r"dns:///([\w.-]+):(\d+)")
_HOST_PORT = re.compile(r"(?<![\w.-])([\w.-]+):(\d+)")
_SECRET = re.compile(r"/run/secrets/(\w+)")


@dataclass
class ComposeService:
    name: str
    command: list[str]
    entrypoint: list[str]
    environment: dict[str, str]
    #: (host port, container port) of each published port.
    ports: list[tuple[int, int]]
    aliases: set[str]
    profiles: list[str]
    volumes: dict[str, str]

    @property
    def is_ghpulse(self) -> bool:
        """Runs the image's entrypoint, `ghpulse <command>`."""
        return not self.entrypoint


def _published(spec: str) -> tuple[int, int]:
    host, container = spec.rsplit(":", 1)
    return int(host.rsplit(":", 1)[-1]), int(container)


def _service(name: str, raw: dict[str, Any]) -> ComposeService:
    networks = raw.get("networks") or {}
    aliases = {alias for net in networks.values() for alias in (net or {}).get("aliases", [])}
    volumes = dict(reversed(v.split(":", 1)) for v in raw.get("volumes", []))
    return ComposeService(
        name=name,
        command=[str(part) for part in raw.get("command", [])],
        entrypoint=[str(part) for part in raw.get("entrypoint", [])],
        environment={k: str(v) for k, v in (raw.get("environment") or {}).items()},
        ports=[_published(str(p)) for p in raw.get("ports", [])],
        aliases=aliases,
        profiles=list(raw.get("profiles", [])),
        volumes=volumes,
    )


@dataclass
class Compose:
    services: dict[str, ComposeService]
    #: Secret name -> the file compose.yaml reads it from (relative to the repository).
    secrets: dict[str, str]

    @classmethod
    def load(cls, path: Path = COMPOSE) -> Compose:
        raw = yaml.safe_load(path.read_text())
        services = {name: _service(name, spec) for name, spec in raw["services"].items()}
        secrets = {name: spec["file"] for name, spec in raw.get("secrets", {}).items()}
        return cls(services, secrets)

    def running(self, command: str) -> list[ComposeService]:
        """The ghpulse services started with `command` (e.g. "scheduler")."""
        return [s for s in self.services.values() if s.is_ghpulse and s.command[:1] == [command]]

    def knows(self, host: str) -> bool:
        return any(host == s.name or host in s.aliases for s in self.services.values())

    def answering_to(self, host: str) -> list[ComposeService]:
        """The services a compose hostname resolves to (its service name or a network alias)."""
        found = [s for s in self.services.values() if host == s.name or host in s.aliases]
        assert found, f"no service answers to {host!r} in compose.yaml"
        return found


@dataclass
class LocalTopology:
    """Maps compose.yaml's addresses, secrets and volumes onto this machine."""

    compose: Compose
    tmp: Path
    postgres_url: str
    #: What `${VAR:-default}` reads (the shell environment compose would see).
    variables: dict[str, str]
    _ports: dict[tuple[str, int], int] = field(default_factory=dict)

    def port(self, service: str, container_port: int) -> int:
        """The local port standing for `service`'s container port."""
        key = (service, container_port)
        if key not in self._ports:
            self._ports[key] = free_port()
        return self._ports[key]

    def address(self, service: str, container_port: int) -> str:
        return f"{LOOPBACK}:{self.port(service, container_port)}"

    def secret_path(self, name: str) -> Path:
        return self.tmp / self.compose.secrets[name]

    def environment(self, service: ComposeService) -> dict[str, str]:
        return {key: self.rewrite(service, value) for key, value in service.environment.items()}

    def arguments(self, service: ComposeService) -> list[str]:
        """The service's entrypoint and command, with listen hosts and ports made local."""
        parts = [*service.entrypoint[3:], *service.command]  # past `python -m <module>`
        local = [LOOPBACK if part == "0.0.0.0" else part for part in parts]
        return [
            str(self.port(service.name, int(part))) if local[i - 1] == "--port" else part
            for i, part in enumerate(local)
        ]

    def rewrite(self, service: ComposeService, value: str) -> str:
        value = _VARIABLE.sub(lambda m: self.variables.get(m[1], m[2] or ""), value)
        value = _POSTGRES_URL.sub(self.postgres_url, value)
        value = _DNS_TARGET.sub(self._every_address, value)
        value = _SECRET.sub(lambda m: str(self.secret_path(m[1])), value)
        for target, source in service.volumes.items():
            value = re.sub(rf"^{re.escape(target)}(?=/|$)", str(self.tmp / source), value)
        return _HOST_PORT.sub(lambda m: self._one_address(service, m), value)

    def _every_address(self, match: re.Match[str]) -> str:
        replicas = self.compose.answering_to(match[1])
        return "ipv4:" + ",".join(self.address(s.name, int(match[2])) for s in replicas)

    def _one_address(self, service: ComposeService, match: re.Match[str]) -> str:
        host, port = match[1], int(match[2])
        if host == "0.0.0.0":
            return self.address(service.name, port)
        replicas = self.compose.answering_to(host) if self.compose.knows(host) else []
        if len(replicas) != 1:
            return match[0]  # not a compose hostname (or a local address already)
        return self.address(replicas[0].name, port)
