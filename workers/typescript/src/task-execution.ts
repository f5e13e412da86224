import { create } from "@bufbuild/protobuf";
import { timestampDate, type Value } from "@bufbuild/protobuf/wkt";
import { TaskErrorSchema } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { TaskAssignment } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import type { Logger } from "pino";
import type { CompletionBatcher } from "./completion-batcher.js";
import type { DaemonHealth } from "./daemon-health.js";
import { LeaseLostError, TaskCancelledError, WorkerShutdownError } from "./errors.js";
import { Heartbeater, heartbeatIntervalMs } from "./heartbeater.js";
import { fromProtoValue, toProtoValue } from "./json.js";
import type { ResolvedWorkerOptions } from "./options.js";
import { type ReportPolicy, report } from "./reporter.js";
import { rpcErrorFields } from "./rpc-errors.js";
import type { TaskContext } from "./task-context.js";
import { type TaskFailure, taskFailureFrom } from "./task-error.js";
import type { WorkerClient } from "./worker-client.js";

/** What a {@link TaskExecution} shares with its worker. */
export interface ExecutionDeps {
  client: WorkerClient;
  options: ResolvedWorkerOptions;
  health: DaemonHealth;
  /** Delivers outputs (on the Work stream, or with CompleteTasks batched across the worker's tasks). */
  completions: Pick<CompletionBatcher, "complete">;
  /** The worker's logger, with `queue` and `workerId`. */
  logger: Logger;
  /** Called once the handler has settled: the task's slot is free while its result is reported. */
  onHandlerSettled: () => void;
}

type Outcome = { ok: true; output: Value } | { ok: false; failure: TaskFailure };

/** One attempt of one task under its lease: runs the handler, heartbeats, reports the result. */
export class TaskExecution {
  private readonly controller = new AbortController();
  private readonly abandonment = new AbortController();
  private readonly heartbeater: Heartbeater;
  private readonly logger: Logger;
  private leaseLost = false;

  constructor(
    private readonly assignment: TaskAssignment,
    private readonly deps: ExecutionDeps,
  ) {
    const { runId, taskId, attempt, handler, leaseId } = assignment;
    this.logger = deps.logger.child({ runId, taskId, attempt, handler });
    this.heartbeater = new Heartbeater({
      client: deps.client,
      leaseId,
      intervalMs: heartbeatIntervalMs(assignment, deps.options.heartbeatIntervalMs),
      health: deps.health,
      onCancelRequested: () => this.cancel(),
      onLeaseLost: (err) => this.loseLease(err),
    });
  }

  /** Runs the attempt to the end; never rejects. */
  async run(): Promise<void> {
    const started = performance.now();
    this.logger.debug("task started");
    const outcome = await this.execute();
    this.heartbeater.stop();
    this.deps.onHandlerSettled();
    if (this.abandonment.signal.aborted) {
      return;
    }
    if (this.leaseLost) {
      this.logger.warn("lease lost; the result of this attempt is not reported");
      return;
    }
    const durationMs = Math.round(performance.now() - started);
    const { client, completions, options, health } = this.deps;
    const policy: ReportPolicy = {
      logger: this.logger,
      health,
      attempts: options.reportAttempts,
      initialDelayMs: options.retryInitialDelayMs,
      maxDelayMs: options.retryMaxDelayMs,
      signal: this.abandonment.signal,
    };
    const leaseId = this.assignment.leaseId;
    if (outcome.ok) {
      this.logger.info({ durationMs }, "task completed");
      await completions.complete(leaseId, outcome.output, policy);
      return;
    }
    const { error, retryable } = outcome.failure;
    this.logger.warn(
      { durationMs, errorType: error.type, error: error.message, retryable: retryable ?? true },
      "task failed",
    );
    await report(
      "FailTask",
      (call) => client.failTask({ leaseId, error, ...(retryable === undefined ? {} : { retryable }) }, call),
      policy,
    );
  }

  /** Aborts the handler's signal and drops its result: the worker's grace period ran out. */
  abandon(graceMs: number): void {
    if (this.abandonment.signal.aborted) {
      return;
    }
    this.abandonment.abort();
    this.heartbeater.stop();
    this.logger.warn({ graceMs }, "task abandoned at shutdown; its lease will expire on the daemon");
    this.controller.abort(new WorkerShutdownError(graceMs));
  }

  private async execute(): Promise<Outcome> {
    const { handlers, workerId } = this.deps.options;
    const name = this.assignment.handler;
    const handler = Object.hasOwn(handlers, name) ? handlers[name] : undefined;
    if (handler === undefined) {
      const known = Object.keys(handlers).join(", ");
      const message = `worker ${workerId} has no handler "${name}" (it has: ${known})`;
      return {
        ok: false,
        failure: { error: create(TaskErrorSchema, { type: "HandlerNotFound", message }), retryable: false },
      };
    }
    this.heartbeater.start();
    let result: unknown;
    try {
      result = await handler(fromProtoValue(this.assignment.input), this.context());
    } catch (err) {
      return { ok: false, failure: taskFailureFrom(err) };
    }
    try {
      return { ok: true, output: toProtoValue(result) };
    } catch (err) {
      const message = `the handler's output is not JSON-serialisable: ${err instanceof Error ? err.message : String(err)}`;
      return {
        ok: false,
        failure: {
          error: create(TaskErrorSchema, { type: "OutputNotSerializable", message }),
          retryable: false,
        },
      };
    }
  }

  private context(): TaskContext {
    const a = this.assignment;
    return {
      runId: a.runId,
      taskId: a.taskId,
      workflow: a.workflow,
      workflowVersion: a.workflowVersion,
      handler: a.handler,
      queue: a.queue,
      attempt: a.attempt,
      maxAttempts: a.maxAttempts,
      runInput: fromProtoValue(a.runInput),
      parentOutputs: Object.fromEntries(
        Object.entries(a.parentOutputs).map(([taskId, value]) => [taskId, fromProtoValue(value)]),
      ),
      attemptDeadline: a.attemptDeadline === undefined ? undefined : timestampDate(a.attemptDeadline),
      signal: this.controller.signal,
      logger: this.logger,
      heartbeat: (progress) => this.heartbeater.beat(progress),
    };
  }

  private cancel(): void {
    // Heartbeats stop: the daemon has said all it will say about this attempt.
    this.heartbeater.stop();
    this.logger.info("run cancelled; aborting the task's signal");
    this.controller.abort(new TaskCancelledError(this.assignment.leaseId));
  }

  private loseLease(err: unknown): void {
    this.leaseLost = true;
    this.heartbeater.stop();
    this.logger.warn(rpcErrorFields(err), "lease lost on heartbeat; aborting the task's signal");
    this.controller.abort(new LeaseLostError(this.assignment.leaseId, { cause: err }));
  }
}
