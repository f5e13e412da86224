import type { JsonValue } from "@bufbuild/protobuf";

/**
 * Room every answer keeps for what surrounds its payloads (ids, names, times, framing): the answer
 * limit must be at least two payloads plus this (see config.ts).
 */
export const ANSWER_OVERHEAD_BYTES = 64 * 1024;

/** Default of the answer limit: the default receive limit of gRPC clients (grpc-js, grpc-go, grpcio). */
export const DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/**
 * A google.protobuf.Value takes at most 5.5 bytes per character of its JSON text (a one-digit
 * number and its comma become an 11-byte list entry); 6 leaves a margin.
 */
const VALUE_BYTES_PER_CHAR = 6;

/** Bytes of `n` as a protobuf varint. */
export function varintSize(n: number): number {
  let size = 1;
  for (let v = n; v >= 128; v = Math.floor(v / 128)) size++;
  return size;
}

/** Bytes a length-delimited field with `bytes` of content takes in its message (field number below 16). */
function fieldSize(bytes: number): number {
  return 1 + varintSize(bytes) + bytes;
}

/** Bytes of a string field's content (UTF-8). */
export function textSize(text: string): number {
  return Buffer.byteLength(text);
}

/** Exact bytes of a JSON value encoded as a google.protobuf.Value. */
export function valueSize(v: JsonValue): number {
  if (v === null) return 2;
  switch (typeof v) {
    case "number":
      return 9;
    case "boolean":
      return 2;
    case "string":
      return fieldSize(Buffer.byteLength(v));
    default: {
      let content = 0;
      if (Array.isArray(v)) {
        for (const e of v) content += fieldSize(valueSize(e));
      } else {
        for (const key of Object.keys(v)) {
          const e = (v as { [k: string]: JsonValue })[key] as JsonValue;
          content += fieldSize(fieldSize(Buffer.byteLength(key)) + fieldSize(valueSize(e)));
        }
      }
      return fieldSize(content);
    }
  }
}

/**
 * What a payload (JSON text) counts for against `limit`: the larger of its JSON text and its
 * protobuf encoding, in bytes, so that it fits an answer in either codec. The encoding is computed
 * only when it could decide: below `limit / 6` characters the JSON size is returned, and both are
 * known to be within the limit.
 */
export function payloadBytes(text: string, limit: number, value?: JsonValue): number {
  const json = Buffer.byteLength(text);
  if (json > limit || text.length * VALUE_BYTES_PER_CHAR + 16 <= limit) return json;
  return Math.max(json, valueSize(value ?? (JSON.parse(text) as JsonValue)));
}

/** The larger size a stored JSON payload may take in an answer, without parsing it: an upper bound. */
export function payloadBound(jsonBytes: number): number {
  return jsonBytes * VALUE_BYTES_PER_CHAR + 16;
}
