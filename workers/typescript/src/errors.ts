/**
 * Thrown by a handler to fail the task at once, whatever attempts its retry policy has left.
 *
 * The task error's type is `options.type`, else the class name (so subclasses report their own name).
 */
export class NonRetryableError extends Error {
  /** Machine-readable error type reported to the daemon. */
  readonly type: string;

  constructor(message: string, options?: { type?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.type = options?.type ?? new.target.name;
  }
}

/** The reason of `ctx.signal` when the daemon asked the task to stop because its run was cancelled. */
export class TaskCancelledError extends Error {
  /** Lease of the cancelled attempt. */
  readonly leaseId: string;

  constructor(leaseId: string) {
    super("the run was cancelled; the task should stop");
    this.name = "TaskCancelledError";
    this.leaseId = leaseId;
  }
}

/**
 * The reason of `ctx.signal` when the lease is gone (expired or reassigned): another worker may run
 * the task, and this attempt's result is not reported.
 */
export class LeaseLostError extends Error {
  /** Lease the daemon no longer honours. */
  readonly leaseId: string;

  constructor(leaseId: string, options?: { cause?: unknown }) {
    super(`lease ${leaseId} was lost; the result of this attempt will not be reported`, options);
    this.name = "LeaseLostError";
    this.leaseId = leaseId;
  }
}

/**
 * The reason of `ctx.signal` when the worker's shutdown grace period ran out: the task is abandoned
 * and its lease expires on the daemon.
 */
export class WorkerShutdownError extends Error {
  /** Grace period that ran out, in milliseconds. */
  readonly graceMs: number;

  constructor(graceMs: number) {
    super(`the worker shut down before the task finished (grace period ${graceMs}ms)`);
    this.name = "WorkerShutdownError";
    this.graceMs = graceMs;
  }
}
