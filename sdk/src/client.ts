import { isMessage, type JsonValue } from "@bufbuild/protobuf";
import { type CallOptions, createClient } from "@connectrpc/connect";
import { addDefaults, type WeftClientOptions } from "./client-options.js";
import { type CallContext, toWeftError } from "./error-mapping.js";
import { runOutcomeError } from "./errors.js";
import { type FailureMethods, failureMethods } from "./failures.js";
import { AdminService, type Queue } from "./gen/weft/v1/admin_service_pb.js";
import { FailureService } from "./gen/weft/v1/failure_service_pb.js";
import { EventType, type Run, type RunEvent, RunStatus, type TaskRun } from "./gen/weft/v1/run_pb.js";
import {
  type ExecutionPlan,
  type Workflow,
  type WorkflowDefinition,
  WorkflowDefinitionSchema,
  type WorkflowSummary,
} from "./gen/weft/v1/workflow_pb.js";
import { WorkflowService } from "./gen/weft/v1/workflow_service_pb.js";
import { fromValue, toValue } from "./json-value.js";
import { retryTransient } from "./reconnect.js";
import { assembledOutput, taskRunWhole, wholeRun } from "./run-pages.js";
import { type ScheduleMethods, scheduleMethods } from "./schedules.js";
import { finalEvent, sharable, sharedEvents } from "./shared-waits.js";
import { SharedWatch } from "./shared-watch.js";
import { createClientTransport } from "./transport.js";
import { TriggerBatcher } from "./trigger-batcher.js";
import { type WatchOptions, watchRun } from "./watch.js";
import { WorkflowBuilder } from "./workflow-builder.js";
import { toWorkflowDefinition, type WorkflowSpec } from "./workflow-spec.js";

/** Anything {@link WeftClient.submitWorkflow} accepts: a builder, a plain spec or the proto message. */
export type WorkflowInput = WorkflowBuilder<string> | WorkflowSpec | WorkflowDefinition;

/** Options of {@link WeftClient.submitWorkflow}. */
export interface SubmitOptions {
  /** Validate and plan only; store nothing (a dry run). */
  validateOnly?: boolean;
}

/** What {@link WeftClient.submitWorkflow} returns. */
export interface SubmitResult {
  /** The stored workflow (version 0 with `validateOnly`). */
  workflow: Workflow;
  /** True when this call stored a new version. */
  created: boolean;
  /** The execution plan: layers of task ids that may run together. */
  layers: string[][];
}

/** What {@link WeftClient.getWorkflow} returns. */
export interface WorkflowWithPlan {
  /** The workflow version. */
  workflow: Workflow;
  /** Its execution plan as layers of task ids. */
  layers: string[][];
}

/** Options of {@link WeftClient.trigger}. */
export interface TriggerOptions {
  /** Triggers with the same workflow and key return the same run instead of starting another. */
  idempotencyKey?: string;
  /**
   * Workflow version to run.
   * @defaultValue 0 (the latest)
   */
  version?: number;
}

/** One run of {@link WeftClient.triggerMany}: a workflow, its input and the options of a trigger. */
export interface TriggerSpec extends TriggerOptions {
  workflow: string;
  /** @defaultValue null */
  input?: JsonValue;
}

/** What {@link WeftClient.trigger} returns. */
export interface TriggerResult {
  /** The run. */
  run: Run;
  /** False when the idempotency key matched an existing run. */
  created: boolean;
}

/** Filter of {@link WeftClient.listRuns}. */
export interface ListRunsFilter {
  /** Only runs of this workflow. */
  workflow?: string;
  /** Only runs in one of these statuses. */
  statuses?: readonly RunStatus[];
  /** Only runs started by this schedule. */
  scheduleId?: string;
  /**
   * Runs fetched per call.
   * @defaultValue 100
   */
  pageSize?: number;
}

/** Options of {@link WeftClient.result}. */
export interface ResultOptions {
  /** Stops waiting: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** A client of weftd's WorkflowService (with its failure-handling calls) and ScheduleService, from {@link createWeftClient}. */
export interface WeftClient extends FailureMethods, ScheduleMethods {
  /** Validates and stores a workflow, versioned by content; `validateOnly` only plans it. */
  submitWorkflow(definition: WorkflowInput, options?: SubmitOptions): Promise<SubmitResult>;
  /** One version of a workflow (the latest by default). @throws WorkflowNotFoundError */
  getWorkflow(name: string, version?: number): Promise<WorkflowWithPlan>;
  /** Every workflow, by name, fetched page by page as the iteration goes. */
  listWorkflows(options?: { pageSize?: number }): AsyncIterable<WorkflowSummary>;
  /**
   * Starts a run of `workflow` with `input`. Calls made together go to weftd as one BatchTrigger
   * (see {@link WeftClientOptions.batchTriggers}); each gets its own result or error.
   * @throws WorkflowNotFoundError
   */
  trigger(workflow: string, input?: JsonValue, options?: TriggerOptions): Promise<TriggerResult>;
  /**
   * Starts 1 to 1,000 runs in one call (BatchTrigger), each as {@link trigger} would; the results
   * come in the order of `runs`. Every run is checked before any starts: an invalid one, or one of a
   * workflow that does not exist, fails the call and starts nothing.
   * @throws WorkflowNotFoundError, InvalidArgumentError
   */
  triggerMany(runs: readonly TriggerSpec[]): Promise<TriggerResult[]>;
  /**
   * A run with every task run (GetRun's pages put together). A payload weftd left out to keep an
   * answer within its limit is named in `omittedFields`; {@link getTaskRun} fetches it.
   * @throws RunNotFoundError
   */
  getRun(runId: string): Promise<Run>;
  /** One task run whole: its output, error and progress (GetTaskRun). @throws RunNotFoundError */
  getTaskRun(runId: string, taskId: string): Promise<TaskRun>;
  /** The output of one task of a run; undefined before it succeeds. @throws RunNotFoundError */
  getTaskOutput(runId: string, taskId: string): Promise<JsonValue | undefined>;
  /** Runs matching `filter`, newest first, fetched page by page as the iteration goes. */
  listRuns(filter?: ListRunsFilter): AsyncIterable<Run>;
  /**
   * The run's events in order, reconnecting by itself after a dropped stream and resuming after
   * the last event it delivered; ends after the run's last RUN_FINISHED (a run resumed after it
   * finished carries on past the first). Every watch and result of a client share one WatchRuns
   * stream (see {@link WeftClientOptions.sharedWatch}). @throws RunNotFoundError
   */
  watch(runId: string, options?: WatchOptions): AsyncIterable<RunEvent>;
  /**
   * Waits for the run to finish and resolves with its output (an object of the leaf tasks'
   * outputs keyed by task id), on the client's shared WatchRuns stream: waiting for many runs
   * costs one stream. A run resumed while it waits is waited for again; rejects as soon as the run
   * is found finished without success.
   * @throws RunFailedError, RunTimedOutError, RunCancelledError, RunNotFoundError
   */
  result(runId: string, options?: ResultOptions): Promise<JsonValue>;
  /** Cancels a run (idempotent) and returns it. @throws RunNotFoundError */
  cancel(runId: string, reason?: string): Promise<Run>;
  /** Every task queue weftd has seen, with its counts and limits (AdminService). */
  listQueues(options?: { pageSize?: number }): AsyncIterable<Queue>;
  /** Closes the client's connection; a later call opens a new one. */
  close(): void;
}

/** Creates a {@link WeftClient} for the weftd at `options.address` (gRPC over HTTP/2 by default). */
export function createWeftClient(options: WeftClientOptions): WeftClient {
  const resolved = addDefaults(options);
  const { transport, close } = createClientTransport(resolved);
  const rpc = createClient(WorkflowService, transport);
  const admin = createClient(AdminService, transport);
  const failures = createClient(FailureService, transport);
  const unary: CallOptions = { timeoutMs: resolved.timeoutMs };
  // One WatchRuns stream for every result() and watch() of this client, when the protocol carries it.
  const shared = resolved.sharedWatch ? new SharedWatch(rpc, resolved.reconnect) : undefined;
  const batcher =
    resolved.triggerBatch === undefined ? undefined : new TriggerBatcher(rpc, unary, resolved.triggerBatch);

  async function call<T>(context: CallContext, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toWeftError(err, context);
    }
  }

  const getRun = (runId: string) => call({ runId }, () => wholeRun(rpc, runId, unary));
  /** getRun that rides out a daemon restart, for result(). */
  const getRunPatiently = (runId: string, signal: AbortSignal | undefined) =>
    call({ runId }, () =>
      retryTransient(async () => (await rpc.getRun({ runId }, unary)).run as Run, resolved.reconnect, signal),
    );
  /** A succeeded run's output; put together from its leaves when weftd left it out of its answers. */
  const outputOf = async (run: Run, event?: RunEvent): Promise<JsonValue> => {
    const omitted = (event ?? run).omittedFields.includes("output");
    if (!omitted) return fromValue(event === undefined ? run.output : event.output);
    return call({ runId: run.id }, () => assembledOutput(rpc, run, unary));
  };

  const client: WeftClient = {
    async submitWorkflow(definition, submit = {}) {
      const def = toDefinition(definition);
      const res = await call({ submitting: true, workflow: def.name }, () =>
        rpc.submitWorkflow({ definition: def, validateOnly: submit.validateOnly ?? false }, unary),
      );
      return { workflow: res.workflow as Workflow, created: res.created, layers: layersOf(res.plan) };
    },

    async getWorkflow(name, version = 0) {
      const res = await call({ workflow: name, version }, () => rpc.getWorkflow({ name, version }, unary));
      return { workflow: res.workflow as Workflow, layers: layersOf(res.plan) };
    },

    async *listWorkflows(list = {}) {
      let pageToken = "";
      do {
        const page = await call({}, () =>
          rpc.listWorkflows({ pageSize: list.pageSize ?? 100, pageToken }, unary),
        );
        yield* page.workflows;
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
    },

    async trigger(workflow, input = null, trigger = {}) {
      const version = trigger.version ?? 0;
      const req = { workflow, version, input: toValue(input), idempotencyKey: trigger.idempotencyKey ?? "" };
      const res = await call({ workflow, version }, () =>
        batcher === undefined ? rpc.trigger(req, unary) : batcher.trigger(req),
      );
      return { run: res.run as Run, created: res.created };
    },

    async triggerMany(runs) {
      const res = await call({}, () =>
        rpc.batchTrigger(
          {
            requests: runs.map((r) => ({
              workflow: r.workflow,
              version: r.version ?? 0,
              input: toValue(r.input ?? null),
              idempotencyKey: r.idempotencyKey ?? "",
            })),
          },
          unary,
        ),
      );
      return res.responses.map((r) => ({ run: r.run as Run, created: r.created }));
    },

    getRun,

    async *listRuns(filter = {}) {
      let pageToken = "";
      do {
        const page = await call({ workflow: filter.workflow ?? "" }, () =>
          rpc.listRuns(
            {
              workflow: filter.workflow ?? "",
              statuses: [...(filter.statuses ?? [])],
              scheduleId: filter.scheduleId ?? "",
              pageSize: filter.pageSize ?? 100,
              pageToken,
            },
            unary,
          ),
        );
        yield* page.runs;
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
    },

    watch(runId, watch = {}) {
      if (!sharable(shared, runId)) return watchRun(rpc, runId, resolved.reconnect, watch);
      return sharedEvents(
        shared,
        runId,
        watch,
        (afterSequence) => watchRun(rpc, runId, resolved.reconnect, { ...watch, afterSequence }),
        async (afterSequence) => (await getRunPatiently(runId, watch.signal)).lastSequence > afterSequence,
      );
    },

    async result(runId, wait = {}) {
      for (;;) {
        if (sharable(shared, runId)) {
          const outcome = await finalEvent(shared, runId, wait.signal);
          if (outcome.kind === "event") {
            const finished = outcome.event;
            if (finished.runStatus === RunStatus.SUCCEEDED && !finished.omittedFields.includes("output")) {
              return fromValue(finished.output);
            }
            // The error's details (failed tasks), or an output weftd left out, are read from the run;
            // a run resumed since its end is waited for again.
            const run = await getRunPatiently(runId, wait.signal);
            if (run.status === RunStatus.SUCCEEDED) return outputOf(run);
            if (run.status !== RunStatus.RUNNING && run.status !== RunStatus.UNSPECIFIED)
              throw runOutcomeError(run);
            continue;
          }
          // weftd cannot follow this run on the shared stream: its own WatchRun does.
        }
        const run = await getRunPatiently(runId, wait.signal);
        if (run.status === RunStatus.SUCCEEDED) return outputOf(run);
        if (run.status !== RunStatus.RUNNING && run.status !== RunStatus.UNSPECIFIED)
          throw runOutcomeError(run);
        let finished: RunEvent | undefined;
        const events = watchRun(rpc, runId, resolved.reconnect, {
          afterSequence: run.lastSequence,
          ...(wait.signal === undefined ? {} : { signal: wait.signal }),
        });
        for await (const event of events) {
          if (event.type === EventType.RUN_FINISHED) finished = event;
          else if (event.type === EventType.RUN_RESUMED) finished = undefined;
        }
        if (finished?.runStatus === RunStatus.SUCCEEDED) return outputOf(run, finished);
        // Failed, or resumed since it finished: the run as it is now decides.
      }
    },

    getTaskRun(runId, taskId) {
      // A task that does not exist is NOT_FOUND without being a missing run: no run context.
      return call({}, () => taskRunWhole(rpc, runId, taskId, unary));
    },

    async getTaskOutput(runId, taskId) {
      const task = await call({}, () => taskRunWhole(rpc, runId, taskId, unary));
      return task.output === undefined ? undefined : fromValue(task.output);
    },

    async cancel(runId, reason = "") {
      return call({ runId }, async () => (await rpc.cancel({ runId, reason }, unary)).run as Run);
    },

    async *listQueues(list = {}) {
      let pageToken = "";
      do {
        const page = await call({}, () =>
          admin.listQueues({ pageSize: list.pageSize ?? 100, pageToken }, unary),
        );
        yield* page.queues;
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
    },

    ...failureMethods(failures, admin, unary, call),
    ...scheduleMethods(transport, call, unary),

    close() {
      shared?.close();
      close();
    },
  };
  return client;
}

/** The proto definition of any {@link WorkflowInput}. */
export function toDefinition(input: WorkflowInput): WorkflowDefinition {
  if (input instanceof WorkflowBuilder) return input.build();
  if (isMessage(input, WorkflowDefinitionSchema)) return input;
  return toWorkflowDefinition(input);
}

function layersOf(plan: ExecutionPlan | undefined): string[][] {
  return (plan?.layers ?? []).map((l) => [...l.taskIds]);
}
