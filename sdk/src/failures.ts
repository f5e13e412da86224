import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { CallOptions, Client } from "@connectrpc/connect";
import { type DurationInput, toDuration } from "./duration.js";
import type { CallContext } from "./error-mapping.js";
import type { AdminService, Queue } from "./gen/weft/v1/admin_service_pb.js";
import { CircuitState } from "./gen/weft/v1/circuit_breaker_pb.js";
import {
  type DeadLetter,
  type DeadLetterFilter,
  DeadLetterFilterSchema,
  type FailureService,
  type GetDeadLetterResponse,
} from "./gen/weft/v1/failure_service_pb.js";
import type { Run } from "./gen/weft/v1/run_pb.js";

/** Which dead letters: every field given must match. */
export interface DeadLetterQuery {
  /** Only tasks of this task queue. */
  queue?: string;
  /** Only tasks of runs of this workflow. */
  workflow?: string;
  /** Only tasks whose last error has this type. */
  errorType?: string;
  /** Only tasks that failed at or after this time. */
  since?: Date;
  /** Only tasks that failed before this time. */
  until?: Date;
}

/** Options of {@link FailureMethods.resumeRun}. */
export interface ResumeOptions {
  /** Also run again this task and its descendants, even if they succeeded. */
  fromTask?: string;
  /** Resumes with one key resume the run once, whatever it does afterwards. */
  idempotencyKey?: string;
  /** Recorded in the run's RUN_RESUMED event. */
  reason?: string;
  /**
   * The finish to resume (the run's `resumeCount` as you read it): the call resumes the run only if
   * nobody resumed it since, else it answers `resumed: false`. Unset: the finish it is in now.
   */
  resumeCount?: number;
}

/** What {@link FailureMethods.resumeRun} and {@link FailureMethods.retryDeadLetter} return. */
export interface ResumeResult {
  /** The run, without its task runs. */
  run: Run;
  /** False when that finish had already been resumed (a concurrent call, or the same key). */
  resumed: boolean;
  /** Tasks queued again at once (resumeRun only). */
  queuedTasks: string[];
  /** Number of tasks that run again (resumeRun only). */
  resetTasks: number;
}

/** Totals of a bulk retry over every page. */
export interface BulkRetryResult {
  retried: number;
  runsResumed: number;
  skipped: number;
}

/** Options of the bulk calls. */
export interface BulkOptions {
  /**
   * Entries handled per call; the SDK calls again until every matching entry is handled.
   * @defaultValue 500
   */
  limit?: number;
  /** Called after each call with the totals so far. */
  onProgress?: (totals: { handled: number }) => void;
}

/** A circuit breaker's settings (see weft.v1.CircuitBreaker); unset fields take their defaults. */
export interface CircuitBreakerSpec {
  /** One circuit per handler of the queue rather than one for the queue. @defaultValue false */
  perHandler?: boolean;
  /** Failures within `window` that open it. @defaultValue 5 */
  failureThreshold?: number;
  /** @defaultValue "1m" */
  window?: DurationInput;
  /** How long it stays open before it lets probes through. @defaultValue "30s" */
  openDuration?: DurationInput;
  /** Tasks a half-open circuit lets start. @defaultValue 1 */
  halfOpenProbes?: number;
}

/** The failure-handling calls of a {@link WeftClient}: dead letters, resumes, circuit breakers. */
export interface FailureMethods {
  /**
   * Resumes a run that ended FAILED, CANCELLED or TIMED_OUT under the same id: its failed, cancelled
   * and skipped tasks (and with `fromTask` that task and its descendants) run again; the tasks that
   * succeeded keep their outputs. @throws RunNotFoundError, WeftError (FAILED_PRECONDITION: running)
   */
  resumeRun(runId: string, options?: ResumeOptions): Promise<ResumeResult>;
  /** Dead letters matching `query`, newest first, fetched page by page as the iteration goes. */
  listDeadLetters(query?: DeadLetterQuery & { pageSize?: number }): AsyncIterable<DeadLetter>;
  /** One dead letter whole: every attempt's error, the task's input, run input, parents' outputs. */
  getDeadLetter(id: string): Promise<GetDeadLetterResponse>;
  /** Retries one dead letter: its run resumes. */
  retryDeadLetter(id: string): Promise<ResumeResult>;
  /** Discards one dead letter: it leaves the view; its run stays as it is. Returns the entry. */
  discardDeadLetter(id: string): Promise<DeadLetter>;
  /** Retries every dead letter matching `query`, `limit` per call, until none is left. */
  retryDeadLetters(query: DeadLetterQuery, options?: BulkOptions): Promise<BulkRetryResult>;
  /** Discards every dead letter matching `query`, `limit` per call, until none is left. */
  discardDeadLetters(query: DeadLetterQuery, options?: BulkOptions): Promise<{ discarded: number }>;
  /** One task queue with its counts, limits and circuit breakers (AdminService). */
  getQueue(name: string): Promise<Queue>;
  /** Sets a queue's circuit breaker, or removes it with null. Returns the queue. */
  setCircuitBreaker(queue: string, settings: CircuitBreakerSpec | null): Promise<Queue>;
  /**
   * Opens (for `openFor`, or until closed by hand) or closes a circuit by hand: the whole queue's,
   * or a handler's. Returns the queue.
   */
  setCircuitState(
    queue: string,
    state: "open" | "closed",
    options?: { handler?: string; openFor?: DurationInput },
  ): Promise<Queue>;
}

/** A DeadLetterFilter from a query. */
function filterOf(q: DeadLetterQuery): DeadLetterFilter {
  return create(DeadLetterFilterSchema, {
    queue: q.queue ?? "",
    workflow: q.workflow ?? "",
    errorType: q.errorType ?? "",
    ...(q.since === undefined ? {} : { since: timestampFromMs(q.since.getTime()) }),
    ...(q.until === undefined ? {} : { until: timestampFromMs(q.until.getTime()) }),
  });
}

/** The failure-handling calls over the client's transport; `call` maps errors as every call does. */
export function failureMethods(
  failures: Client<typeof FailureService>,
  admin: Client<typeof AdminService>,
  unary: CallOptions,
  call: <T>(context: CallContext, fn: () => Promise<T>) => Promise<T>,
): FailureMethods {
  return {
    async resumeRun(runId, options = {}) {
      const res = await call({ runId }, () =>
        failures.resumeRun(
          {
            runId,
            fromTask: options.fromTask ?? "",
            idempotencyKey: options.idempotencyKey ?? "",
            reason: options.reason ?? "",
            ...(options.resumeCount === undefined ? {} : { resumeCount: options.resumeCount }),
          },
          unary,
        ),
      );
      return {
        run: res.run as Run,
        resumed: res.resumed,
        queuedTasks: res.queuedTasks,
        resetTasks: res.resetTasks,
      };
    },

    async *listDeadLetters(query = {}) {
      let pageToken = "";
      do {
        const page = await call({}, () =>
          failures.listDeadLetters(
            { filter: filterOf(query), pageSize: query.pageSize ?? 100, pageToken },
            unary,
          ),
        );
        yield* page.deadLetters;
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
    },

    getDeadLetter(id) {
      return call({}, () => failures.getDeadLetter({ id }, unary));
    },

    async retryDeadLetter(id) {
      const res = await call({}, () => failures.retryDeadLetter({ id }, unary));
      return { run: res.run as Run, resumed: res.resumed, queuedTasks: [], resetTasks: 0 };
    },

    async discardDeadLetter(id) {
      return (await call({}, () => failures.discardDeadLetter({ id }, unary))).deadLetter as DeadLetter;
    },

    async retryDeadLetters(query, options = {}) {
      const totals: BulkRetryResult = { retried: 0, runsResumed: 0, skipped: 0 };
      let pageToken = "";
      do {
        const res = await call({}, () =>
          failures.retryDeadLetters(
            { filter: filterOf(query), limit: options.limit ?? 500, pageToken },
            unary,
          ),
        );
        totals.retried += res.retried;
        totals.runsResumed += res.runsResumed;
        totals.skipped += res.skipped;
        options.onProgress?.({ handled: totals.retried + totals.skipped });
        pageToken = res.nextPageToken;
      } while (pageToken !== "");
      return totals;
    },

    async discardDeadLetters(query, options = {}) {
      let discarded = 0;
      let pageToken = "";
      do {
        const res = await call({}, () =>
          failures.discardDeadLetters(
            { filter: filterOf(query), limit: options.limit ?? 500, pageToken },
            unary,
          ),
        );
        discarded += res.discarded;
        options.onProgress?.({ handled: discarded });
        pageToken = res.nextPageToken;
      } while (pageToken !== "");
      return { discarded };
    },

    async getQueue(name) {
      return (await call({}, () => admin.getQueue({ name }, unary))).queue as Queue;
    },

    async setCircuitBreaker(queue, settings) {
      const res = await call({}, () =>
        admin.updateQueue(
          settings === null
            ? { name: queue, clearCircuitBreaker: true }
            : {
                name: queue,
                circuitBreaker: {
                  perHandler: settings.perHandler ?? false,
                  failureThreshold: settings.failureThreshold ?? 0,
                  ...(settings.window === undefined ? {} : { window: toDuration(settings.window) }),
                  ...(settings.openDuration === undefined
                    ? {}
                    : { openDuration: toDuration(settings.openDuration) }),
                  halfOpenProbes: settings.halfOpenProbes ?? 0,
                },
              },
          unary,
        ),
      );
      return res.queue as Queue;
    },

    async setCircuitState(queue, state, options = {}) {
      const res = await call({}, () =>
        admin.setCircuitState(
          {
            queue,
            handler: options.handler ?? "",
            state: state === "open" ? CircuitState.OPEN : CircuitState.CLOSED,
            ...(options.openFor === undefined ? {} : { openFor: toDuration(options.openFor) }),
          },
          unary,
        ),
      );
      return res.queue as Queue;
    },
  };
}
