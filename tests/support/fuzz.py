"""Hypothesis strategies for any protobuf message, built from its descriptor: valid-ish values
(names, ids and repositories the servers know) mixed with hostile ones (NUL, huge strings,
extreme numbers, undefined enum values, unnormalized durations), nested to a bounded depth."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

MAX_DEPTH = 4
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
#: Strings that reach deep into validation (and past it), and strings meant to hurt.
PLAUSIBLE = (
    "octo/a",
    "test/gated",
    "ghpulse-demo/api",
    "acme",
    "o/..",
    "o/.",
    "../escaped",
    "team",
    "core",
    "0 3 * * *",
    "*/5 * * * *",
    "UTC",
    "Europe/Berlin",
    "Mars/Olympus",
    "upsert",
    "classify",
    "export",
    "cron",
    "template.labels",
    "paused",
    "noop",
    "",
    " ",
)
HOSTILE = ("\x00", "a\x00b", "x" * 5000, "é" * 300, "%%%", "0001-01-01T00:00:00+14:00", "{}")


def _integers(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    low, high = bounds
    extremes = [
        value for value in (low, high, -1, 0, 1, 2, 99, 10**9, 10**12) if low <= value <= high
    ]
    return st.one_of(st.sampled_from(extremes), st.integers(max(low, -5), min(high, 600)))


def _tame(field: FieldDescriptor, pool: Sequence[str]) -> st.SearchStrategy[Any]:
    """A value a real client might send."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return st.sampled_from([*pool, *PLAUSIBLE])
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=4)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(0, 100)
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([value.number for value in _enum_type(field).values])
    return st.integers(0, 1_800_000_000 if "seconds" in field.name else 5)


def scalar(field: FieldDescriptor, pool: Sequence[str], hostile: bool) -> st.SearchStrategy[Any]:
    kind = field.type
    if not hostile:
        return _tame(field, pool)
    if kind == FieldDescriptor.TYPE_STRING:
        return st.one_of(
            st.sampled_from([*pool, *PLAUSIBLE]),
            st.sampled_from(HOSTILE),
            st.text(max_size=30),
        )
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=16)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind == FieldDescriptor.TYPE_ENUM:
        defined = [value.number for value in _enum_type(field).values]
        return st.one_of(st.sampled_from(defined), st.sampled_from([-1, 99, 2**31 - 1]))
    bounds = {
        FieldDescriptor.TYPE_INT32: INT32,
        FieldDescriptor.TYPE_SINT32: INT32,
        FieldDescriptor.TYPE_SFIXED32: INT32,
        FieldDescriptor.TYPE_UINT32: UINT32,
        FieldDescriptor.TYPE_FIXED32: UINT32,
        FieldDescriptor.TYPE_UINT64: UINT64,
        FieldDescriptor.TYPE_FIXED64: UINT64,
    }.get(kind, INT64)
    return _integers(bounds)


def _value(
    field: FieldDescriptor, pool: Sequence[str], depth: int, hostile: bool
) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(_message_type(field), pool, depth + 1, hostile)
    return scalar(field, pool, hostile)


def _message_type(field: FieldDescriptor) -> Descriptor:
    assert field.message_type is not None, field.full_name
    return field.message_type


def _enum_type(field: FieldDescriptor) -> EnumDescriptor:
    assert field.enum_type is not None, field.full_name
    return field.enum_type


def _deferred(
    field: FieldDescriptor, pool: Sequence[str], depth: int, hostile: bool
) -> st.SearchStrategy[Any]:
    """`_field`'s strategy, built when first drawn (messages nest; hypothesis wants a function)."""
    return st.deferred(lambda: _field(field, pool, depth, hostile))


def _is_map(field: FieldDescriptor) -> bool:
    return (
        field.type == FieldDescriptor.TYPE_MESSAGE and _message_type(field).GetOptions().map_entry
    )


def _field(
    field: FieldDescriptor, pool: Sequence[str], depth: int, hostile: bool
) -> st.SearchStrategy[Any]:
    if _is_map(field):
        entry = _message_type(field)
        key = scalar(entry.fields_by_name["key"], pool, hostile)
        value = _value(entry.fields_by_name["value"], pool, depth, hostile)
        return st.dictionaries(key, value, max_size=3)
    if field.is_repeated:
        return st.lists(_value(field, pool, depth, hostile), max_size=3)
    return _value(field, pool, depth, hostile)


def _assign(msg: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(msg, field.name)
    if _is_map(field):
        message_values = (
            _message_type(field).fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE
        )
        for key, item in value.items():
            if message_values:
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(msg, field.name, value)


def _builder(descriptor: Descriptor) -> Callable[[dict[str, Any]], Message]:
    cls = GetMessageClass(descriptor)

    def build(values: dict[str, Any]) -> Message:
        msg = cls()
        for name, value in values.items():
            if value is not None:
                _assign(msg, descriptor.fields_by_name[name], value)
        return msg

    return build


def _message(
    descriptor: Descriptor, pool: Sequence[str], depth: int, hostile: bool
) -> st.SearchStrategy[Message]:
    if depth > MAX_DEPTH:
        return st.just(GetMessageClass(descriptor)())
    fields = {
        field.name: st.one_of(st.none(), _deferred(field, pool, depth, hostile))
        for field in descriptor.fields
    }
    return st.fixed_dictionaries(fields).map(_builder(descriptor))


def message(descriptor: Descriptor, pool: Sequence[str] = ()) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type, each field set or not: two in three with values a client
    might send (strings from `pool` and known names), one in three with hostile values."""
    tame = _message(descriptor, pool, 0, hostile=False)
    return st.one_of(tame, tame, _message(descriptor, pool, 0, hostile=True))
