"""Small protobuf helpers shared by the servicers: timestamps, durations, Structs."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value.astimezone(UTC))
    return message


_NANOS = 999_999_999
#: Timestamp's range (0001-01-01 to 9999-12-31, UTC) and Duration's (about 10,000 years).
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799
_MAX_DURATION_SECONDS = 315_576_000_000


def from_timestamp(message: timestamp_pb2.Timestamp, present: bool = True) -> datetime | None:
    """The datetime of `message`, or None when the field is unset (`present` False); raises
    ValueError unless it is a normalized timestamp in range (nanos in [0, 1e9))."""
    if not present:
        return None
    if not 0 <= message.nanos <= _NANOS or not _MIN_SECONDS <= message.seconds <= _MAX_SECONDS:
        raise ValueError("timestamp out of range or not normalized")
    return message.ToDatetime(tzinfo=UTC)


def from_duration(message: duration_pb2.Duration) -> timedelta:
    """The timedelta of `message`; raises ValueError unless it is normalized (nanos within
    ±999,999,999 and of the seconds' sign) and in protobuf's range."""
    seconds, nanos = message.seconds, message.nanos
    if abs(seconds) > _MAX_DURATION_SECONDS or abs(nanos) > _NANOS:
        raise ValueError("duration out of range")
    if (seconds > 0 and nanos < 0) or (seconds < 0 and nanos > 0):
        raise ValueError("duration not normalized: seconds and nanos differ in sign")
    return message.ToTimedelta()


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


def strict_b64decode(token: str) -> bytes:
    """URL-safe base64 of a page token, refusing any other character (the lenient decoder would
    silently drop them and turn garbage into an empty token); raises `binascii.Error`."""
    return base64.b64decode(token.translate(_URLSAFE).encode(), validate=True)


_URLSAFE = str.maketrans("-_", "+/")


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
