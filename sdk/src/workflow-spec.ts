import { create, type JsonValue } from "@bufbuild/protobuf";
import { type DurationInput, toDuration } from "./duration.js";
import {
  type RetryPolicy,
  RetryPolicySchema,
  type TaskTimeouts,
  TaskTimeoutsSchema,
  type WorkflowDefinition,
  WorkflowDefinitionSchema,
} from "./gen/weft/v1/workflow_pb.js";
import { toValue } from "./json-value.js";

/** How often and how fast a failed attempt is retried; unset fields inherit. */
export interface RetrySpec {
  /** Total attempts including the first; 1 means no retry. */
  maxAttempts?: number;
  /** Delay before the first retry. */
  initialBackoff?: DurationInput;
  /** Multiplier applied to the delay after each retry (>= 1). */
  backoffCoefficient?: number;
  /** Upper bound on the delay. */
  maxBackoff?: DurationInput;
  /** Fraction in [0, 1] by which each delay is randomly reduced. */
  jitter?: number;
  /** Error types that fail the task at once, without retry. */
  nonRetryableErrorTypes?: readonly string[];
}

/** How long an attempt may take; unset fields inherit. */
export interface TimeoutsSpec {
  /** Longest time one attempt may run. */
  startToClose?: DurationInput;
  /** Longest time between two heartbeats. */
  heartbeat?: DurationInput;
  /** Longest time a ready task may wait for a worker. */
  scheduleToStart?: DurationInput;
}

/** The options of one task, without its id (what {@link WorkflowBuilder.task} takes). */
export interface TaskOptions<Parent extends string = string> {
  /**
   * Name of the handler a worker runs for this task.
   * @defaultValue the task id
   */
  handler?: string;
  /**
   * Task queue the task is dispatched to.
   * @defaultValue "default" (chosen by the daemon)
   */
  queue?: string;
  /** Ids of the tasks that must succeed before this one becomes ready. */
  dependsOn?: readonly Parent[];
  /** Static input handed to the handler with every attempt. */
  input?: JsonValue;
  /** Retry policy. */
  retry?: RetrySpec;
  /** Timeouts. */
  timeouts?: TimeoutsSpec;
  /** Rate-limit key shared across queues, e.g. `"stripe-api"` or `"tenant-{{input.tenant}}"`. */
  rateLimitKey?: string;
}

/** One task of a {@link WorkflowSpec}. */
export interface TaskSpec extends TaskOptions {
  /** Identifier, unique in the workflow. */
  id: string;
}

/**
 * A workflow as a plain object — the shape of a workflow YAML/JSON file, with durations as
 * `"30s"` strings or milliseconds.
 */
export interface WorkflowSpec {
  /** Name of the workflow: 1-128 characters from [A-Za-z0-9_.-]. */
  name: string;
  /** Free-form description shown by tools. */
  description?: string;
  /** The tasks of the DAG. */
  tasks: readonly TaskSpec[];
  /** Retry policy for every task that sets none. */
  defaultRetry?: RetrySpec;
  /** Timeouts for every task that sets none. */
  defaultTimeouts?: TimeoutsSpec;
  /** Wall-clock limit of a whole run. */
  runTimeout?: DurationInput;
  /**
   * Keep independent branches running after a task fails for good.
   * @defaultValue false
   */
  continueOnFailure?: boolean;
}

/** The weft.v1.WorkflowDefinition message of a {@link WorkflowSpec}. */
export function toWorkflowDefinition(spec: WorkflowSpec): WorkflowDefinition {
  return create(WorkflowDefinitionSchema, {
    name: spec.name,
    description: spec.description ?? "",
    tasks: spec.tasks.map((t) => ({
      id: t.id,
      handler: t.handler ?? t.id,
      queue: t.queue ?? "",
      dependsOn: [...(t.dependsOn ?? [])],
      ...(t.input === undefined ? {} : { input: toValue(t.input) }),
      ...(t.retry === undefined ? {} : { retry: toRetryPolicy(t.retry) }),
      ...(t.timeouts === undefined ? {} : { timeouts: toTimeouts(t.timeouts) }),
      rateLimitKey: t.rateLimitKey ?? "",
    })),
    ...(spec.defaultRetry === undefined ? {} : { defaultRetry: toRetryPolicy(spec.defaultRetry) }),
    ...(spec.defaultTimeouts === undefined ? {} : { defaultTimeouts: toTimeouts(spec.defaultTimeouts) }),
    ...(spec.runTimeout === undefined ? {} : { runTimeout: toDuration(spec.runTimeout) }),
    continueOnFailure: spec.continueOnFailure ?? false,
  });
}

function toRetryPolicy(r: RetrySpec): RetryPolicy {
  return create(RetryPolicySchema, {
    maxAttempts: r.maxAttempts ?? 0,
    ...(r.initialBackoff === undefined ? {} : { initialBackoff: toDuration(r.initialBackoff) }),
    backoffCoefficient: r.backoffCoefficient ?? 0,
    ...(r.maxBackoff === undefined ? {} : { maxBackoff: toDuration(r.maxBackoff) }),
    ...(r.jitter === undefined ? {} : { jitter: r.jitter }),
    nonRetryableErrorTypes: [...(r.nonRetryableErrorTypes ?? [])],
  });
}

function toTimeouts(t: TimeoutsSpec): TaskTimeouts {
  return create(TaskTimeoutsSchema, {
    ...(t.startToClose === undefined ? {} : { startToClose: toDuration(t.startToClose) }),
    ...(t.heartbeat === undefined ? {} : { heartbeat: toDuration(t.heartbeat) }),
    ...(t.scheduleToStart === undefined ? {} : { scheduleToStart: toDuration(t.scheduleToStart) }),
  });
}
