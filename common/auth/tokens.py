"""The tokens file (`GHPULSE_AUTH_FILE`): named bearer tokens with scopes, stored as hashes.

    {"version": 1, "tokens": [{"name": "ci", "sha256": "…", "scopes": ["runs:read"],
                               "labels": {"team": "core"}, "created_at": "2026-…Z"}]}

A token is 256 random bits (`secrets.token_urlsafe`), shown once when created; only its SHA-256
is stored. A fast hash is right here: the secret is random, not a password, so there is nothing to
guess from the hash, and every RPC checks it in memory without a slow key derivation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.auth.scopes import SCOPES

#: Plaintext tokens start with this, so a leaked one is recognizable (and greppable).
PREFIX = "ghpt_"
TOKEN_BYTES = 32
FORMAT_VERSION = 1
NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
LABEL_KEY = re.compile(r"^[a-z0-9]([a-z0-9_.\-/]*[a-z0-9])?$")


class TokenFileError(ValueError):
    """The tokens file or a token definition is invalid (the message says why)."""


@dataclass(frozen=True)
class TokenRecord:
    """One named token as stored: its hash, never the token."""

    name: str
    sha256: str
    scopes: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "scopes": list(self.scopes),
            "labels": dict(self.labels),
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> TokenRecord:
        if not isinstance(data, dict):
            raise TokenFileError("each token must be an object")
        try:
            record = cls(
                name=str(data["name"]),
                sha256=str(data["sha256"]).lower(),
                scopes=tuple(str(s) for s in data.get("scopes", ())),
                labels={str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
                created_at=str(data.get("created_at", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenFileError(f"malformed token entry: {type(exc).__name__}") from None
        if not re.fullmatch(r"[0-9a-f]{64}", record.sha256):
            raise TokenFileError(f"token {record.name!r}: sha256 must be 64 hex digits")
        validate(record.name, record.scopes, record.labels)
        return record


def digest(token: str) -> str:
    """The stored form of `token`: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def validate(name: str, scopes: Sequence[str], labels: Mapping[str, str]) -> None:
    """Raise `TokenFileError` unless the name, scopes and label scope are well formed."""
    if not NAME.match(name):
        raise TokenFileError(
            "a token name is 1-64 lowercase letters, digits, '.', '_' or '-' "
            "(starting and ending with a letter or digit)"
        )
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown or not scopes:
        raise TokenFileError(f"scopes must be among {', '.join(SCOPES)} (at least one)")
    for key, value in labels.items():
        if not LABEL_KEY.match(key) or len(key) > 63 or len(value) > 256 or "\x00" in value:
            raise TokenFileError(f"invalid label scope {key}={value}")


def read(path: str | os.PathLike[str]) -> list[TokenRecord]:
    """The tokens of the file at `path` ([] if it does not exist)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        data = json.loads(text) if text.strip() else {"tokens": []}
    except ValueError:
        raise TokenFileError(f"{path}: not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("tokens", []), list):
        raise TokenFileError(f"{path}: expected an object with a 'tokens' list")
    records = [TokenRecord.from_json(item) for item in data.get("tokens", [])]
    names = [r.name for r in records]
    if len(set(names)) != len(names):
        raise TokenFileError(f"{path}: token names must be unique")
    return records


def write(path: str | os.PathLike[str], records: Sequence[TokenRecord]) -> None:
    """Replace the file atomically (temp file + rename, mode 0600): a service reloading it sees
    the old file or the new one, never half of one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    body = {"version": FORMAT_VERSION, "tokens": [r.to_json() for r in records]}
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(body, file, indent=2)
            file.write("\n")
        os.chmod(temp, 0o600)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def create(
    path: str | os.PathLike[str],
    name: str,
    scopes: Sequence[str],
    labels: Mapping[str, str] | None = None,
) -> str:
    """Add the token `name` to the file (created if absent); returns the plaintext token, which
    is stored nowhere."""
    labels = dict(labels or {})
    scopes = tuple(dict.fromkeys(scopes))
    validate(name, scopes, labels)
    records = read(path)
    if any(r.name == name for r in records):
        raise TokenFileError(f"a token named {name!r} exists; revoke it first")
    token = new_token()
    created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    records.append(TokenRecord(name, digest(token), scopes, labels, created))
    write(path, records)
    return token


def revoke(path: str | os.PathLike[str], name: str) -> bool:
    """Remove the token `name`; False if there was none."""
    records = read(path)
    kept = [r for r in records if r.name != name]
    if len(kept) == len(records):
        return False
    write(path, kept)
    return True
