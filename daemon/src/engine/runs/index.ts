// runs/: run state: the Lua steps on a run's keys, run records and their API views, run operations,
// the jobs of runs, the reconciler.
// Code outside this folder imports only this file (checked by pnpm check:imports).
export { Reconciler, type ReconcilerExtras } from "./reconciler.js";
export { defineTaskView } from "./run-answer.js";
export { ENQUEUE_CHUNK, jobSpec, RunJobs } from "./run-jobs.js";
export { checkRunId, RunOps, type TriggerItem } from "./run-ops.js";
export { type HoldReasons, INDEX_PRUNE_GRACE_MS, notFound, RunReads } from "./run-reads.js";
export {
  type DeadLetterNote,
  type LeaseArgs,
  type LeaseDeadline,
  type ResumedTask,
  RunSteps,
  type StartBudget,
} from "./run-steps.js";
export {
  eventFromStored,
  isFinalEvent,
  isFinalRunStatus,
  jsonValue,
  runStatusOf,
  type StoredEvent,
  type TaskRecord,
} from "./run-view.js";
export { RunWorkflows } from "./run-workflows.js";
