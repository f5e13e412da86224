// shared/: what every part of the engine uses: Redis key names, ids, answer sizes, small utilities.
// Code outside this folder imports only this file (checked by pnpm check:imports).
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
export { CLUSTER_SHARD_TAGS, Keys } from "./keys.js";
export { LruCache } from "./lru-cache.js";
export { anySlotPipeline } from "./pipelines.js";
export { invalidArgument, type Violation } from "./violations.js";
