// definitions/: validation, compilation into a DAG, the execution plan, content hashes, the versioned
// workflow store.
// Code outside this folder imports only this file (checked by pnpm check:imports).

export { assignmentLimitOf, baseBytes, staticInputBytes } from "./assignment-size.js";
export {
  CIRCUIT_DEFAULTS,
  type CircuitSettings,
  circuitBreakerProblems,
  resolveCircuitBreaker,
} from "./circuit-breaker.js";
export type { CompiledTask, CompiledWorkflow } from "./compiled-workflow.js";
export { compileWorkflow } from "./dag.js";
export {
  backoffDelayMs,
  backoffSeed,
  DEFAULT_RETRY_POLICY,
  isRetryable,
  type ResolvedRetryPolicy,
} from "./retry-policy.js";
export { type LoadedWorkflow, WorkflowStore } from "./workflow-store.js";
