import { Code } from "@connectrpc/connect";
import { type Run, RunStatus, TaskStatus } from "./gen/weft/v1/run_pb.js";

/** Every error the SDK throws for a failed call or an unsuccessful run: `code` is the gRPC status. */
export class WeftError extends Error {
  override readonly name: string = "WeftError";
  /** The gRPC status code of the failed call (`Code.Unknown` for a run that did not succeed). */
  readonly code: Code;
  /** The server's message, without the code prefix. */
  readonly rawMessage: string;

  constructor(message: string, code: Code, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.rawMessage = message;
  }
}

/** The daemon could not be reached, or went away and did not come back in time (`UNAVAILABLE`). */
export class WeftUnavailableError extends WeftError {
  override readonly name: string = "WeftUnavailableError";
}

/** The workflow (or the pinned version of it) does not exist. */
export class WorkflowNotFoundError extends WeftError {
  override readonly name: string = "WorkflowNotFoundError";
  /** Name of the workflow asked for. */
  readonly workflow: string;
  /** Version asked for; 0 for the latest. */
  readonly version: number;

  constructor(message: string, workflow: string, version = 0, options?: { cause?: unknown }) {
    super(message, Code.NotFound, options);
    this.workflow = workflow;
    this.version = version;
  }
}

/** The run does not exist (or finished longer ago than the retention). */
export class RunNotFoundError extends WeftError {
  override readonly name: string = "RunNotFoundError";
  /** Id of the run asked for. */
  readonly runId: string;

  constructor(message: string, runId: string, options?: { cause?: unknown }) {
    super(message, Code.NotFound, options);
    this.runId = runId;
  }
}

/** The dead letter does not exist (retried, discarded, or its run is past its retention). */
export class DeadLetterNotFoundError extends WeftError {
  override readonly name: string = "DeadLetterNotFoundError";
  /** Id of the entry asked for. */
  readonly id: string;

  constructor(message: string, id: string, options?: { cause?: unknown }) {
    super(message, Code.NotFound, options);
    this.id = id;
  }
}

/** The schedule does not exist. */
export class ScheduleNotFoundError extends WeftError {
  override readonly name: string = "ScheduleNotFoundError";
  /** Id of the schedule asked for. */
  readonly scheduleId: string;

  constructor(message: string, scheduleId: string, options?: { cause?: unknown }) {
    super(message, Code.NotFound, options);
    this.scheduleId = scheduleId;
  }
}

/** One invalid field of a request, from the google.rpc.BadRequest detail of the error. */
export interface FieldViolation {
  /** Path of the field, e.g. `definition.tasks[1].depends_on[0]`. */
  field: string;
  /** What is wrong with it. */
  description: string;
}

/** The daemon rejected a request as invalid (`INVALID_ARGUMENT`); `violations` names each field. */
export class InvalidArgumentError extends WeftError {
  override readonly name: string = "InvalidArgumentError";
  /** Every invalid field with the reason. */
  readonly violations: readonly FieldViolation[];

  constructor(message: string, violations: readonly FieldViolation[], options?: { cause?: unknown }) {
    super(message, Code.InvalidArgument, options);
    this.violations = violations;
  }
}

/** A workflow definition was rejected: unknown or duplicate ids, a cycle, a limit, a bad field. */
export class InvalidWorkflowError extends InvalidArgumentError {
  override readonly name: string = "InvalidWorkflowError";
}

/** A task that failed for good, with the error of its last attempt. */
export interface FailedTask {
  /** Task id. */
  taskId: string;
  /** Its last attempt number. */
  attempt: number;
  /** Attempts its retry policy allowed. */
  maxAttempts: number;
  /** Error type, e.g. "ValueError" or "HeartbeatTimeout". */
  errorType: string;
  /** Error message. */
  errorMessage: string;
  /** Optional details such as a stack trace. */
  errorDetails: string;
}

/** A run ended FAILED (or TIMED_OUT, see {@link RunTimedOutError}); `failedTasks` says which task failed and why. */
export class RunFailedError extends WeftError {
  override readonly name: string = "RunFailedError";
  /** Run id. */
  readonly runId: string;
  /** The final state of the run. */
  readonly run: Run;
  /** The tasks that failed for good, in definition order. */
  readonly failedTasks: readonly FailedTask[];

  constructor(run: Run, message?: string) {
    const failedTasks = failedTasksOf(run);
    super(message ?? failureMessage(run, failedTasks), Code.Unknown);
    this.runId = run.id;
    this.run = run;
    this.failedTasks = failedTasks;
  }
}

/** A run hit its run timeout and ended TIMED_OUT. */
export class RunTimedOutError extends RunFailedError {
  override readonly name: string = "RunTimedOutError";

  constructor(run: Run) {
    super(run, `run "${run.id}" timed out${run.error === "" ? "" : `: ${run.error}`}`);
  }
}

/** A run was cancelled; `reason` is the reason given to Cancel. */
export class RunCancelledError extends WeftError {
  override readonly name: string = "RunCancelledError";
  /** Run id. */
  readonly runId: string;
  /** The final state of the run. */
  readonly run: Run;
  /** Why it was cancelled. */
  readonly reason: string;

  constructor(run: Run) {
    super(`run "${run.id}" was cancelled${run.error === "" ? "" : `: ${run.error}`}`, Code.Canceled);
    this.runId = run.id;
    this.run = run;
    this.reason = run.error;
  }
}

/** The error matching a finished run that did not succeed. */
export function runOutcomeError(run: Run): RunFailedError | RunCancelledError {
  if (run.status === RunStatus.CANCELLED) return new RunCancelledError(run);
  if (run.status === RunStatus.TIMED_OUT) return new RunTimedOutError(run);
  return new RunFailedError(run);
}

function failedTasksOf(run: Run): FailedTask[] {
  return run.tasks
    .filter((t) => t.status === TaskStatus.FAILED)
    .map((t) => ({
      taskId: t.taskId,
      attempt: t.attempt,
      maxAttempts: t.maxAttempts,
      errorType: t.error?.type ?? "",
      errorMessage: t.error?.message ?? "",
      errorDetails: t.error?.details ?? "",
    }));
}

function failureMessage(run: Run, failed: FailedTask[]): string {
  const tasks = failed.map(
    (t) =>
      `task "${t.taskId}" failed (attempt ${t.attempt}/${t.maxAttempts}): ` +
      `${t.errorType === "" ? "" : `${t.errorType}: `}${t.errorMessage}`,
  );
  const why = tasks.length > 0 ? tasks.join("; ") : run.error;
  return `run "${run.id}" failed${why === "" ? "" : `: ${why}`}`;
}
