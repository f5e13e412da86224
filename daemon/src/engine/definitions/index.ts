// Workflow definitions: validation, compilation into a DAG, the execution plan, content hashes, the versioned store.
// What this folder offers the rest of the engine, which imports it only through this file.
export { assignmentLimitOf, baseBytes, staticInputBytes } from "./assignment-size.js";
export type { CompiledTask, CompiledWorkflow } from "./compiled-workflow.js";
export {
  backoffDelayMs,
  backoffSeed,
  DEFAULT_RETRY_POLICY,
  isRetryable,
  type ResolvedRetryPolicy,
} from "./retry-policy.js";
export { type LoadedWorkflow, WorkflowStore } from "./workflow-store.js";
