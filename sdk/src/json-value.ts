import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";

/** A google.protobuf.Value holding `json`. */
export function toValue(json: JsonValue): Value {
  return fromJson(ValueSchema, json);
}

/** The JSON held by a google.protobuf.Value; `null` when the value is unset. */
export function fromValue(value: Value | undefined): JsonValue {
  return value === undefined ? null : toJson(ValueSchema, value);
}
