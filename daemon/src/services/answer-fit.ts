import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CompleteTaskResultSchema } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { ANSWER_FRAMING } from "../engine/shared/index.js";

type Result = MessageInitShape<typeof CompleteTaskResultSchema>;

/** Bytes of a result besides its lease id and message: an upper bound (code, flag, tags, lengths). */
const RESULT_FIXED = 24;

/** Bytes a result takes in an answer: an upper bound. */
function resultBytes(r: Result): number {
  return RESULT_FIXED + Buffer.byteLength(r.leaseId ?? "") + Buffer.byteLength(r.message ?? "");
}

/**
 * The results of a CompleteTasks call within one answer of at most `maxBytes`: when they would
 * not fit, the messages of the last results are left empty, then their lease ids (the results
 * are in the order of the completions; the codes always stay).
 */
export function fitResults(results: Result[], maxBytes: number): Result[] {
  const room = maxBytes - ANSWER_FRAMING;
  let bytes = results.reduce((n, r) => n + resultBytes(r), 0);
  for (const field of ["message", "leaseId"] as const) {
    for (let i = results.length - 1; i >= 0 && bytes > room; i--) {
      const r = results[i] as Result;
      const text = r[field] ?? "";
      if (text === "") continue;
      bytes -= Buffer.byteLength(text);
      results[i] = { ...r, [field]: "" };
    }
  }
  return results;
}

/** The results of one Work message in as many messages as keep each within `maxBytes`. */
export function splitResults(results: Result[], maxBytes: number): Result[][] {
  const room = maxBytes - ANSWER_FRAMING;
  const parts: Result[][] = [];
  let part: Result[] = [];
  let bytes = 0;
  for (const r of results) {
    const size = resultBytes(r);
    if (part.length > 0 && bytes + size > room) {
      parts.push(part);
      part = [];
      bytes = 0;
    }
    // A single result over the limit (a lease id or message of megabytes) goes without its message.
    part.push(size > room ? (fitResults([r], maxBytes)[0] as Result) : r);
    bytes += Math.min(size, room);
  }
  if (part.length > 0) parts.push(part);
  return parts;
}
