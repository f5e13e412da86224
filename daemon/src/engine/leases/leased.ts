import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import type { RedisClient } from "../../redis/redis.js";
import type { CompiledTask, LoadedWorkflow, WorkflowStore } from "../definitions/index.js";
import type { Dispatchers, KeyLimiter, QueueAdmin, TaskQueues } from "../dispatch/index.js";
import type { Circuits, DeadLetterIndex, FailureStats } from "../failures/index.js";
import type { LeaseArgs, LeaseDeadline, RunJobs, RunSteps, RunWorkflows } from "../runs/index.js";
import type { Keys, LeaseRef } from "../shared/index.js";

/** What the worker protocol works with: the run steps, the task queues, and the limits it applies. */
export interface LeaseDeps {
  redis: RedisClient;
  keys: Keys;
  logger: Logger;
  workflows: WorkflowStore;
  runWorkflows: RunWorkflows;
  steps: RunSteps;
  jobs: RunJobs;
  queues: TaskQueues;
  dispatchers: Dispatchers;
  admin: QueueAdmin;
  limiter: KeyLimiter;
  /** Circuit breakers: checked at hand-over, told of failures and successes. */
  circuits: Circuits;
  /** The dead-letter indexes a task that fails for good enters. */
  deadLetters: DeadLetterIndex;
  /** Failures' counters for /metrics. */
  failureStats: FailureStats;
  /** The limits the worker protocol applies. */
  limits: {
    /** Longest long-poll wait granted, in ms. */
    pollWaitCapMs: number;
    /** Largest answer or assignment message, in bytes. */
    maxResponseBytes: number;
    /** Largest JSON payload (output, progress, error), in bytes. */
    maxPayloadBytes: number;
    /** How long finished runs are kept, in ms. */
    runRetentionMs: number;
  };
}

/** A task failure reported by a worker or detected by the daemon. */
export interface TaskFailure {
  type: string;
  message: string;
  details: string;
}

/** A task under a lease, with the workflow version its run executes. */
export interface Leased {
  lease: LeaseRef & LeaseArgs;
  loaded: LoadedWorkflow;
  task: CompiledTask;
}

/** What recording a failure led to. */
export interface FailureRecorded {
  willRetry: boolean;
  nextAttemptTime: Timestamp | undefined;
  /** Set when a lease timer found the lease extended: its new deadline. */
  aliveUntil?: number;
  /** Set when a schedule-to-start timer fired before its task's deadline (the task was queued again): that deadline. */
  notBefore?: number;
}

/** The steps that end or watch a lease, which handing a task over may take (see LeaseOps). */
export interface LeaseEnds {
  /** Watches a lease until its deadline on this replica. */
  watch(lease: LeaseRef, deadline: number): void;
  /** Ends an attempt whose lease was lost; see LeaseOps.expire. */
  expire(leased: Leased, startToCloseDeadline: number): Promise<number | undefined>;
  /** Records a failed attempt; see LeaseOps.recordFailure. */
  recordFailure(
    leased: Leased,
    failure: TaskFailure,
    retryable: boolean,
    deadline: LeaseDeadline,
  ): Promise<FailureRecorded>;
}
