import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Value } from "@bufbuild/protobuf/wkt";

/**
 * Deepest nesting of objects and arrays a JSON value (a google.protobuf.Value: run input, task
 * input, output, progress) may have; checked wherever one enters weftd.
 *
 * Why 30: the standard protobuf decoders refuse a message nested deeper than 100 message levels
 * (protobuf-es, which grpc-js and Connect clients use here; upb in Python, C++, Java, C#). A level
 * of JSON costs two message levels (Value, then Struct or ListValue), and three for an object in the
 * decoders that count a map's entries as messages (upb, C++, Java). The deepest answer is a run's
 * output (GetRun, WatchRun): GetRunResponse → Run → Value → Struct → entry → a leaf task's output,
 * 6 levels around the leaf's Value, so an output of 30 object levels takes 6 + 3 × 30 = 96 levels
 * (measured with Python's upb: 31 is the most it reads there). Every client can read back what
 * weftd stores, with a few levels to spare for answers that wrap a value further.
 */
export const MAX_JSON_DEPTH = 30;

/** Why a google.protobuf.Value cannot be taken as JSON, and where in it (".a[2]", "" at the top). */
class ValueProblem {
  /** Path segments from the problem outwards. */
  readonly inside: string[] = [];
  /** Reads `${what} at ${path}${why}`. */
  constructor(
    readonly what: string,
    readonly why = "",
  ) {}
}

/**
 * A google.protobuf.Value as plain JSON, or what is wrong with it: an empty Value (no kind set)
 * anywhere in it, a number JSON cannot carry (NaN, ±Infinity), or more than {@link MAX_JSON_DEPTH}
 * levels of nesting. The description reads after the field's name: "requests[3].input: nests 51
 * levels; at most 32 are allowed".
 */
export function jsonValueOf(value: Value): { json: JsonValue } | { problem: string } {
  const walk = { depth: 0 };
  let json: JsonValue;
  try {
    json = convert(value, 0, walk);
  } catch (err) {
    if (!(err instanceof ValueProblem)) throw err;
    const at = err.inside.reverse().join("");
    return { problem: `${err.what}${at === "" ? "" : ` at ${at}`}${err.why}` };
  }
  if (walk.depth > MAX_JSON_DEPTH) {
    return { problem: `nests ${walk.depth} levels; at most ${MAX_JSON_DEPTH} are allowed` };
  }
  return { json };
}

/** Converts `v`, found inside `level` objects and arrays; records the deepest nesting in `walk`. */
function convert(v: Value, level: number, walk: { depth: number }): JsonValue {
  const kind = v.kind;
  switch (kind.case) {
    case "nullValue":
      return null;
    case "boolValue":
    case "stringValue":
      return kind.value;
    case "numberValue":
      if (!Number.isFinite(kind.value)) {
        throw new ValueProblem(`holds the number ${kind.value}`, "; JSON numbers must be finite");
      }
      return kind.value;
    case "structValue": {
      const depth = level + 1;
      if (depth > walk.depth) walk.depth = depth;
      const out: JsonObject = {};
      for (const [key, item] of Object.entries(kind.value.fields)) {
        let converted: JsonValue;
        try {
          converted = convert(item, depth, walk);
        } catch (err) {
          if (err instanceof ValueProblem) err.inside.push(memberPath(key));
          throw err;
        }
        if (key === "__proto__") {
          // An own member like any other, not the object's prototype.
          Object.defineProperty(out, key, {
            value: converted,
            enumerable: true,
            writable: true,
            configurable: true,
          });
        } else {
          out[key] = converted;
        }
      }
      return out;
    }
    case "listValue": {
      const depth = level + 1;
      if (depth > walk.depth) walk.depth = depth;
      const items = kind.value.values;
      const out: JsonValue[] = new Array(items.length);
      for (let i = 0; i < items.length; i++) {
        try {
          out[i] = convert(items[i] as Value, depth, walk);
        } catch (err) {
          if (err instanceof ValueProblem) err.inside.push(`[${i}]`);
          throw err;
        }
      }
      return out;
    }
    default:
      throw new ValueProblem("holds an empty google.protobuf.Value (no kind set)");
  }
}

/** ".name" for a plain member name, `["any key"]` otherwise. */
function memberPath(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}
