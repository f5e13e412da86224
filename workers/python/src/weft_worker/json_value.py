"""Conversions between google.protobuf.Value and plain Python JSON values."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format, struct_pb2


_MAX_SAFE_INTEGER = 2**53


def from_proto_value(value: struct_pb2.Value | None) -> Any:
    """A plain Python value as ``json.loads`` would give it: dict, list, str, int, float, bool or
    None. JSON numbers travel as doubles; whole ones come back as int (``1``, not ``1.0``), as far
    as a double holds them exactly. An unset value is None."""
    if value is None or value.WhichOneof("kind") is None:
        return None
    return _ints(json_format.MessageToDict(value))


def _ints(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= _MAX_SAFE_INTEGER else value
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def to_proto_value(value: Any) -> struct_pb2.Value:
    """A google.protobuf.Value with ``json.dumps`` semantics (tuples become lists, ...).

    Raises TypeError when the value cannot be serialised.
    """
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(str(err)) from err
    out = struct_pb2.Value()
    json_format.Parse(text, out)
    return out
