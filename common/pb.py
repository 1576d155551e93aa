"""Small protobuf helpers shared by the servicers: timestamps, durations, Structs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value.astimezone(UTC))
    return message


def from_timestamp(message: timestamp_pb2.Timestamp, present: bool = True) -> datetime | None:
    """The datetime of `message`, or None when the field is unset (`present` False)."""
    if not present:
        return None
    return message.ToDatetime(tzinfo=UTC)


def duration(value: timedelta | None) -> duration_pb2.Duration | None:
    if value is None:
        return None
    message = duration_pb2.Duration()
    message.FromTimedelta(value)
    return message


def _numbers(value: Any) -> Any:
    # Struct stores every number as a double; give integers back their type.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers(item) for item in value]
    return value


def struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    message = struct_pb2.Struct()
    message.update(value)
    return message


def from_struct(message: struct_pb2.Struct) -> dict[str, Any]:
    data = json_format.MessageToDict(message)
    result: dict[str, Any] = _numbers(data)
    return result
