import type { JsonValue } from "@bufbuild/protobuf";
import type { Logger } from "pino";

/** What a handler knows about the attempt it runs, and how it talks back to the daemon. */
export interface TaskContext {
  /** Run id. */
  readonly runId: string;
  /** Task id within the workflow. */
  readonly taskId: string;
  /** Workflow name. */
  readonly workflow: string;
  /** Workflow version the run executes. */
  readonly workflowVersion: number;
  /** Handler name the task asked for. */
  readonly handler: string;
  /** Task queue the task came from. */
  readonly queue: string;
  /** Attempt number, starting at 1. */
  readonly attempt: number;
  /** Attempts allowed by the task's retry policy. */
  readonly maxAttempts: number;
  /** The run's input. */
  readonly runInput: JsonValue;
  /** Outputs of the task's parents, keyed by parent task id. */
  readonly parentOutputs: Readonly<Record<string, JsonValue>>;
  /** When the attempt's start-to-close timeout fires, if it has one. */
  readonly attemptDeadline: Date | undefined;
  /**
   * Aborts when the run is cancelled ({@link TaskCancelledError}), when the lease is lost
   * ({@link LeaseLostError}) or when the worker's shutdown grace period runs out
   * ({@link WorkerShutdownError}); `signal.reason` says which.
   */
  readonly signal: AbortSignal;
  /** Logger with `runId`, `taskId`, `attempt`, `queue` and `workerId` fields. */
  readonly logger: Logger;
  /**
   * Sends a heartbeat now, with an optional progress report that later automatic heartbeats repeat.
   * Heartbeats are also sent automatically. A lost lease or a cancellation shows on `signal`; this
   * rejects only when `progress` is not JSON-serialisable.
   */
  heartbeat(progress?: JsonValue): Promise<void>;
}
