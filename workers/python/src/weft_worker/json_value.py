"""Conversions between google.protobuf.Value and plain Python JSON values."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format, struct_pb2


def from_proto_value(value: struct_pb2.Value | None) -> Any:
    """A plain Python value (dict, list, str, float, bool or None); an unset value is None."""
    if value is None or value.WhichOneof("kind") is None:
        return None
    return json_format.MessageToDict(value)


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
