"""`plugin`: a job a crawler plugin adds, named by the plugin and carrying JSON parameters.

The scheduler stores, schedules and dispatches plugin jobs without knowing them; only the
crawlers that loaded the plugin (`GHPULSE_CRAWLER_PLUGINS`) can run them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import struct_pb2

from common.errors import FieldViolation, quote, require
from common.jobs.base import JobKind, JobSpec
from common.proto.ghpulse.v1 import runs_pb2

#: A plugin job's name; the built-in kinds' names are taken.
PLUGIN_KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
RESERVED_KINDS = frozenset(kind.value for kind in JobKind)
#: The largest `params`, as compact JSON.
MAX_PARAMS_BYTES = 16 * 1024
_KIND_RULE = (
    "a lowercase letter, then at most 62 lowercase letters, digits, '_', '.' or '-'; "
    f"not one of {', '.join(sorted(RESERVED_KINDS))}"
)


def kind_violations(field_name: str, kind: str) -> list[FieldViolation]:
    """A violation of `field_name` unless `kind` can name a plugin job."""
    if PLUGIN_KIND.match(kind) and kind not in RESERVED_KINDS:
        return []
    return [FieldViolation(field_name, f"{quote(kind)} is not a plugin job name: {_KIND_RULE}")]


def _canonical(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _numbers(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _numbers(item)


def params_violations(params: Mapping[str, Any]) -> list[FieldViolation]:
    """JSON with finite numbers and no NUL characters (PostgreSQL stores neither), size-bound."""
    if any(not math.isfinite(number) for number in _numbers(params)):
        return [FieldViolation("plugin.params", "numbers must be finite")]
    if any("\x00" in text for text in _strings(params)):
        return [FieldViolation("plugin.params", "must not contain NUL characters")]
    try:
        size = len(_canonical(params).encode())
    except (TypeError, ValueError) as exc:
        return [FieldViolation("plugin.params", f"not JSON: {exc}")]
    if size > MAX_PARAMS_BYTES:
        return [FieldViolation("plugin.params", f"at most {MAX_PARAMS_BYTES} bytes as JSON")]
    return []


def _plain(value: struct_pb2.Value) -> Any:
    """A Struct value as Python data. Unlike `json_format`, keeps NaN and infinities (validation
    rejects them with a field violation) and gives integers back their type."""
    which = value.WhichOneof("kind")
    if which == "struct_value":
        return {key: _plain(item) for key, item in value.struct_value.fields.items()}
    if which == "list_value":
        return [_plain(item) for item in value.list_value.values]
    if which == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() else number
    if which in ("string_value", "bool_value"):
        return getattr(value, which)
    return None


@dataclass(frozen=True)
class PluginJobSpec(JobSpec):
    """A plugin's job: `kind` is the name the plugin registered it under (e.g. "noop")."""

    kind: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    job_kind = JobKind.PLUGIN

    def validated(self) -> PluginJobSpec:
        spec = PluginJobSpec(self.kind.strip(), dict(self.params))
        require(kind_violations("plugin.kind", spec.kind) + params_violations(spec.params))
        return spec

    def concurrency_key(self) -> str:
        """`plugin:<kind>`, + `:` and a digest of the params when there are any."""
        key = f"plugin:{self.kind}"
        if not self.params:
            return key
        digest = hashlib.sha256(_canonical(self.params).encode()).hexdigest()
        return f"{key}:{digest[:16]}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PluginJobSpec:
        return cls(str(data.get("kind", "")), dict(data.get("params") or {}))

    def to_pb(self) -> runs_pb2.PluginJob:
        params = struct_pb2.Struct()
        params.update(self.params)
        return runs_pb2.PluginJob(kind=self.kind, params=params)

    @classmethod
    def from_pb(cls, message: runs_pb2.PluginJob) -> PluginJobSpec:
        params = {key: _plain(value) for key, value in message.params.fields.items()}
        return cls(message.kind, params)
