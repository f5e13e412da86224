import { fromJson, type JsonValue, toBinary } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, test } from "vitest";
import { payloadBound, payloadBytes, valueSize, varintSize } from "./answer-size.js";

const encoded = (v: JsonValue) => toBinary(ValueSchema, fromJson(ValueSchema, v)).length;

describe("valueSize", () => {
  test.each<[string, JsonValue]>([
    ["null", null],
    ["a number", 1.5],
    ["zero", 0],
    ["true", true],
    ["false", false],
    ["an empty string", ""],
    ["a string with multi-byte characters", "héllo ✓ 😀"],
    ["an empty list", []],
    ["an empty object", {}],
    ["an object with an empty key", { "": 1 }],
    ["nested values", { a: [1, "two", null, { b: [true, false, []] }], c: {}, é: "x".repeat(300) }],
    ["a long list", Array.from({ length: 5000 }, (_, i) => (i % 3 === 0 ? i : String(i)))],
  ])("is the encoded size of %s", (_, v) => {
    expect(valueSize(v)).toBe(encoded(v));
  });

  test("a list of one-digit numbers takes at most 5.5 bytes per JSON character", () => {
    const v = Array.from({ length: 10_000 }, () => 1);
    const text = JSON.stringify(v);
    expect(encoded(v) / text.length).toBeLessThanOrEqual(5.5);
    expect(encoded(v) / text.length).toBeGreaterThan(5.4);
    expect(payloadBound(Buffer.byteLength(text))).toBeGreaterThanOrEqual(encoded(v));
  });
});

describe("payloadBytes", () => {
  test("is the JSON size when the encoding cannot exceed the limit", () => {
    expect(payloadBytes('{"a":1}', 1000)).toBe(7);
  });

  test("is the encoded size when it is larger and could decide", () => {
    const v = Array.from({ length: 1000 }, () => 7);
    const text = JSON.stringify(v);
    expect(payloadBytes(text, 5000)).toBe(encoded(v));
    expect(payloadBytes(text, 5000)).toBeGreaterThan(5000);
  });

  test("is the JSON size when that alone is over the limit", () => {
    expect(payloadBytes(JSON.stringify("x".repeat(100)), 50)).toBe(102);
  });
});

test("varintSize", () => {
  expect([0, 127, 128, 16_383, 16_384, 2 ** 21, 2 ** 35].map(varintSize)).toEqual([1, 1, 2, 2, 3, 4, 6]);
});
