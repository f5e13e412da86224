import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { jsonValueOf, MAX_JSON_DEPTH } from "./json-values.js";

function nested(levels: number, inner: JsonValue = 1): JsonValue {
  let json = inner;
  for (let i = 0; i < levels; i++) json = i % 2 === 0 ? [json] : { a: json };
  return json;
}

const number = (value: number): Value => ({
  $typeName: "google.protobuf.Value",
  kind: { case: "numberValue", value },
});

describe("jsonValueOf", () => {
  it("returns the JSON of a valid value, members named __proto__ included", () => {
    const json = JSON.parse('{"a":[1,"x",true,null,{"b":{}}],"__proto__":{"c":[]}}') as JsonValue;
    const result = jsonValueOf(fromJson(ValueSchema, json));
    expect(result).toEqual({ json });
    expect(JSON.stringify("json" in result ? result.json : undefined)).toBe(JSON.stringify(json));
  });

  it(`takes ${MAX_JSON_DEPTH} levels of nesting and refuses one more, saying how deep it is`, () => {
    expect(jsonValueOf(fromJson(ValueSchema, nested(MAX_JSON_DEPTH)))).toEqual({
      json: nested(MAX_JSON_DEPTH),
    });
    expect(jsonValueOf(fromJson(ValueSchema, nested(MAX_JSON_DEPTH - 1, [])))).toHaveProperty("json");
    expect(jsonValueOf(fromJson(ValueSchema, nested(MAX_JSON_DEPTH + 1)))).toEqual({
      problem: `nests ${MAX_JSON_DEPTH + 1} levels; at most ${MAX_JSON_DEPTH} are allowed`,
    });
    expect(jsonValueOf(fromJson(ValueSchema, nested(51)))).toEqual({
      problem: `nests 51 levels; at most ${MAX_JSON_DEPTH} are allowed`,
    });
    // Empty containers count as a level.
    expect(jsonValueOf(fromJson(ValueSchema, nested(MAX_JSON_DEPTH, {})))).toEqual({
      problem: `nests ${MAX_JSON_DEPTH + 1} levels; at most ${MAX_JSON_DEPTH} are allowed`,
    });
  });

  it("names where an empty Value or a number JSON cannot carry sits", () => {
    const list = fromJson(ValueSchema, { a: [1, 2, { "b c": 3 }] });
    const b = list.kind.case === "structValue" ? list.kind.value.fields.a : undefined;
    const items = b?.kind.case === "listValue" ? b.kind.value.values : [];
    items[1] = { $typeName: "google.protobuf.Value", kind: { case: undefined } };
    expect(jsonValueOf(list)).toEqual({
      problem: "holds an empty google.protobuf.Value (no kind set) at .a[1]",
    });
    items[1] = number(1);
    const inner = items[2]?.kind.case === "structValue" ? items[2].kind.value.fields : {};
    inner["b c"] = number(Number.POSITIVE_INFINITY);
    expect(jsonValueOf(list)).toEqual({
      problem: 'holds the number Infinity at .a[2]["b c"]; JSON numbers must be finite',
    });
    expect(jsonValueOf(number(Number.NaN))).toEqual({
      problem: "holds the number NaN; JSON numbers must be finite",
    });
    expect(jsonValueOf({ $typeName: "google.protobuf.Value", kind: { case: undefined } })).toEqual({
      problem: "holds an empty google.protobuf.Value (no kind set)",
    });
  });
});
