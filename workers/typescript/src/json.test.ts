import { describe, expect, test } from "vitest";
import { fromProtoValue, toProtoValue } from "./json.js";

describe("JSON conversion", () => {
  test("round-trips JSON values through google.protobuf.Value", () => {
    for (const value of [
      null,
      true,
      0,
      -1.5,
      "",
      "ü",
      [],
      {},
      [1, "a", null, { b: [false] }],
      { a: { b: { c: 1 } } },
    ]) {
      expect(fromProtoValue(toProtoValue(value))).toEqual(value);
    }
  });

  test("uses JSON.stringify semantics for what JSON cannot hold", () => {
    expect(fromProtoValue(toProtoValue(undefined))).toBeNull();
    expect(fromProtoValue(toProtoValue({ a: undefined, b: 1 }))).toEqual({ b: 1 });
    expect(fromProtoValue(toProtoValue(new Date(0)))).toBe("1970-01-01T00:00:00.000Z");
    expect(fromProtoValue(toProtoValue([undefined, Number.NaN]))).toEqual([null, null]);
    expect(() => toProtoValue(1n)).toThrow(TypeError);
  });

  test("an unset or empty Value is null", () => {
    expect(fromProtoValue(undefined)).toBeNull();
    expect(fromProtoValue({ $typeName: "google.protobuf.Value", kind: { case: undefined } })).toBeNull();
  });
});
