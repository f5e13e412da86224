// The engine's building blocks that every part uses: Redis key names, ids, answer sizes, small utilities.
// What this folder offers the rest of the engine, which imports it only through this file.
export { ANSWER_FRAMING, AnswerRoom, measuredValue, type WantedPayload } from "./answer-room.js";
export {
  ANSWER_OVERHEAD_BYTES,
  DEFAULT_MAX_RESPONSE_BYTES,
  payloadBytes,
  textSize,
  valueSize,
} from "./answer-size.js";
export { BackoffLoop } from "./backoff-loop.js";
export {
  formatLeaseId,
  idempotentRunId,
  isRunId,
  jobIdOf,
  type LeaseRef,
  newLeaseNonce,
  newRunId,
  parseJobId,
  parseLeaseId,
} from "./ids.js";
export { jsonValueOf, MAX_JSON_DEPTH } from "./json-values.js";
export { Keys } from "./keys.js";
export { LruCache } from "./lru-cache.js";
export { invalidArgument, type Violation } from "./violations.js";
