import type { JsonValue } from "@bufbuild/protobuf";
import { fromJson, toJson } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";

/**
 * Converts a `google.protobuf.Value` from the daemon to a plain JS value; an unset value is `null`.
 */
export function fromProtoValue(value: Value | undefined): JsonValue {
  if (value === undefined || value.kind.case === undefined) {
    return null;
  }
  return toJson(ValueSchema, value);
}

/**
 * Converts a handler's result to a `google.protobuf.Value` with `JSON.stringify` semantics:
 * `undefined` becomes `null`, `Date`s become strings, `undefined` properties are dropped.
 *
 * @throws TypeError when the value cannot be serialised (a `bigint`, a cycle).
 */
export function toProtoValue(value: unknown): Value {
  // The round trip applies toJSON() and drops what JSON cannot hold, so fromJson() sees only JSON.
  const text = value === undefined ? undefined : JSON.stringify(value);
  const json = text === undefined ? null : (JSON.parse(text) as JsonValue);
  return fromJson(ValueSchema, json);
}
