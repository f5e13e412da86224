import { create, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Run, RunSchema, RunStatus } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { Logger } from "pino";
import { logThrottle } from "../../observability/log-throttle.js";
import type { RedisClient } from "../../redis/redis.js";
import { isRedisUnavailableError } from "../../redis/redis.js";
import type { LoadedWorkflow, WorkflowStore } from "../definitions/index.js";
import type { Timers } from "../dispatch/index.js";
import {
  ANSWER_FRAMING,
  AnswerRoom,
  idempotentRunId,
  invalidArgument,
  isRunId,
  type Keys,
  measuredValue,
  newRunId,
  payloadBytes,
  textSize,
} from "../shared/index.js";
import type { RunJobs } from "./run-jobs.js";
import { type ListRunsQuery, notFound, type RunReads } from "./run-reads.js";
import type { RunSteps } from "./run-steps.js";
import type { RunWorkflows } from "./run-workflows.js";

/** One run to start: what a TriggerRequest holds. */
export interface TriggerItem {
  workflow: string;
  /** 0: the latest. */
  version: number;
  input: JsonValue | undefined;
  /** "" for none. */
  idempotencyKey: string;
  /** The schedule starting the run and the fire time it starts it for (see schedules/). */
  schedule?: { id: string; fireTime: number };
}

interface PreparedRun {
  item: TriggerItem;
  loaded: LoadedWorkflow;
  inputText: string;
  runId: string;
}

/** What the run operations work with. */
export interface RunOpsDeps {
  redis: RedisClient;
  keys: Keys;
  logger: Logger;
  workflows: WorkflowStore;
  runWorkflows: RunWorkflows;
  steps: RunSteps;
  jobs: RunJobs;
  timers: Timers;
  /** GetRun, GetTaskRun, ListRuns and the runs other answers echo, within the answer limit. */
  reads: RunReads;
  limits: {
    /** Largest JSON payload (a run's input), in bytes. */
    maxPayloadBytes: number;
    /** Largest answer, in bytes (--max-response-bytes). */
    maxResponseBytes: number;
    /** How long finished runs are kept, in ms. */
    runRetentionMs: number;
  };
}

/** Starting, reading, listing and cancelling runs. */
export class RunOps {
  /** GetRun, GetTaskRun, ListRuns and the runs other answers echo, within the answer limit. */
  readonly reads: RunReads;

  constructor(private readonly deps: RunOpsDeps) {
    this.reads = deps.reads;
  }

  /** Starts a run, or returns the run of the same idempotency key. */
  async trigger(
    workflow: string,
    version: number,
    input: JsonValue | undefined,
    idempotencyKey: string,
  ): Promise<{ run: Run; created: boolean }> {
    const [result] = await this.triggerMany(
      [{ workflow, version, input, idempotencyKey }],
      (_, field) => field,
    );
    return result as { run: Run; created: boolean };
  }

  /**
   * Starts runs as {@link trigger} does, answering in the order of `items`. Every item is loaded and
   * checked before any run starts: the first problem, in item order, throws with its field named by
   * `fieldOf` (a workflow that does not exist is NOT_FOUND, an input over the payload limit
   * RESOURCE_EXHAUSTED), and so are runs that hold more than `maxTasks` tasks together. Then the
   * runs start together, and their first tasks are queued with one BullMQ call per queue.
   */
  async triggerMany(
    items: readonly TriggerItem[],
    fieldOf: (index: number, field: string) => string,
    maxTasks = Number.POSITIVE_INFINITY,
  ): Promise<{ run: Run; created: boolean }[]> {
    const { deps } = this;
    const max = deps.limits.maxPayloadBytes;
    const loads = new Map<string, Promise<LoadedWorkflow>>();
    const checked = await Promise.allSettled(
      items.map(async (item, i) => {
        const key = `${item.workflow}@${item.version}`;
        let load = loads.get(key);
        if (load === undefined) {
          load = deps.workflows.get(item.workflow, item.version);
          loads.set(key, load);
        }
        const loaded = await load.catch((err: unknown) => {
          const error = ConnectError.from(err);
          const field = fieldOf(i, "workflow");
          if (error.code !== Code.NotFound || field === "workflow") throw err;
          throw new ConnectError(`${field}: ${error.rawMessage}`, Code.NotFound);
        });
        const inputText = JSON.stringify(item.input ?? null);
        const bytes = payloadBytes(inputText, max, item.input ?? null);
        if (bytes > max) {
          throw new ConnectError(
            `${fieldOf(i, "input")}: ${bytes} bytes exceeds the limit of ${max} bytes`,
            Code.ResourceExhausted,
          );
        }
        const runId =
          item.idempotencyKey === "" ? newRunId() : idempotentRunId(item.workflow, item.idempotencyKey);
        return { item, loaded, inputText, runId };
      }),
    );
    const failed = checked.find((c) => c.status === "rejected");
    if (failed !== undefined) throw failed.reason;
    const runs = checked.map((c) => (c as PromiseFulfilledResult<PreparedRun>).value);
    const tasks = runs.reduce((n, { loaded }) => n + loaded.compiled.size, 0);
    if (tasks > maxTasks) {
      throw new ConnectError(
        `requests: these runs hold ${tasks} tasks together, more than the ${maxTasks} one call may start (--max-tasks-per-workflow)`,
        Code.ResourceExhausted,
      );
    }

    // The answer holds every run's small fields: a call whose answer could not is refused up front.
    const bounds = runs.reduce((n, r) => n + echoBound(r), 0);
    if (bounds > deps.limits.maxResponseBytes - ANSWER_FRAMING) {
      const each = Math.ceil(bounds / runs.length);
      throw new ConnectError(
        `requests: the answer to these ${runs.length} runs would take about ${bounds} bytes before their inputs, ` +
          `more than --max-response-bytes (${deps.limits.maxResponseBytes}) allows; send at most ` +
          `${Math.max(1, Math.floor((deps.limits.maxResponseBytes - ANSWER_FRAMING) / each))} per call`,
        Code.ResourceExhausted,
      );
    }
    const now = Date.now();
    // The trigger step's task table, built once per workflow version of the call.
    const tables = new Map<LoadedWorkflow, { id: string; parents: number }[]>();
    const tableOf = ({ compiled }: LoadedWorkflow) =>
      Array.from({ length: compiled.size }, (_, i) => ({
        id: compiled.idAt(i),
        parents: compiled.parentCount(i),
      }));
    const created = await Promise.all(
      runs.map(async ({ item, loaded, inputText, runId }) => {
        let table = tables.get(loaded);
        if (table === undefined) {
          table = tableOf(loaded);
          tables.set(loaded, table);
        }
        const [fresh] = await deps.steps.trigger(
          runId,
          loaded.workflow.name,
          loaded.workflow.version,
          inputText,
          now,
          item.idempotencyKey,
          table,
          item.schedule === undefined
            ? [deps.keys.runIndexOf(runId), deps.keys.runIndexOf(runId, loaded.workflow.name)]
            : [
                deps.keys.runIndexOf(runId),
                deps.keys.runIndexOf(runId, loaded.workflow.name),
                deps.keys.scheduleRuns(item.schedule.id),
              ],
          item.schedule,
        );
        deps.runWorkflows.remember(runId, loaded.workflow.name, loaded.workflow.version);
        return fresh === 1;
      }),
    );
    const started = runs.filter((_, i) => created[i]);
    try {
      await deps.timers.schedule(
        started
          .filter(({ loaded }) => loaded.compiled.runTimeoutMs > 0)
          .map(({ runId, loaded }) => ({
            data: { kind: "run-timeout" as const, runId },
            delayMs: loaded.compiled.runTimeoutMs,
          })),
      );
      await deps.jobs.enqueueAll(
        started.map(({ runId, loaded }) => ({ runId, loaded, taskIds: loaded.compiled.roots })),
      );
    } catch (err) {
      // The runs are recorded: failing the call now would make a caller without an idempotency
      // key start them twice. The reconciler queues their first tasks (and timers) once Redis
      // answers again, --reconcile-after after the trigger.
      if (!isRedisUnavailableError(err)) throw err;
      logThrottle(deps.logger).warn(
        { err, runs: started.length },
        "runs started, their first tasks to be queued once Redis answers",
      );
    }
    return this.echo(runs, created, now);
  }

  /**
   * The runs a trigger answers with, in one answer within the answer limit: the runs it started as
   * the trigger step wrote them (RUN_STARTED plus one TASK_QUEUED per root), the others as stored;
   * inputs (and outputs and errors) that do not fit are left out and named in omitted_fields.
   */
  private async echo(
    runs: readonly PreparedRun[],
    created: readonly boolean[],
    now: number,
  ): Promise<{ run: Run; created: boolean }[]> {
    const { deps } = this;
    const room = new AnswerRoom(deps.limits.maxResponseBytes);
    // Every run's small fields fit (checked before they started), then the payloads as they fit.
    for (const [i, r] of runs.entries()) if (created[i]) room.take(echoBound(r));
    const existing = await this.reads.summaries(
      runs.filter((_, i) => !created[i]).map((r) => r.runId),
      room,
    );
    let next = 0;
    return runs.map(({ item, loaded, inputText, runId }, i) => {
      if (!created[i]) return { run: existing[next++] as Run, created: false };
      deps.logger.debug({ runId, workflow: item.workflow, version: loaded.workflow.version }, "run started");
      const run = create(RunSchema, {
        id: runId,
        workflow: loaded.workflow.name,
        workflowVersion: loaded.workflow.version,
        status: RunStatus.RUNNING,
        createTime: timestampFromMs(now),
        idempotencyKey: item.idempotencyKey,
        lastSequence: BigInt(1 + loaded.compiled.roots.length),
        scheduleId: item.schedule?.id ?? "",
        fireTime: item.schedule === undefined ? undefined : timestampFromMs(item.schedule.fireTime),
      });
      const input = measuredValue(inputText);
      if (room.take(input.bytes + 6)) run.input = input.value;
      else run.omittedFields.push("input");
      return { run, created: true };
    });
  }

  /** A run with its task runs from the page token on, as many as fit in one answer. */
  getPage(runId: string, taskPageToken: string): Promise<{ run: Run; next: string }> {
    checkRunId(runId);
    return this.reads.get(runId, taskPageToken);
  }

  /** A run with its task runs, as many as fit in one answer (omitted_fields names "tasks" when not all). */
  async get(runId: string): Promise<Run> {
    return (await this.getPage(runId, "")).run;
  }

  /** One page of runs, newest first. */
  list(query: ListRunsQuery): Promise<{ runs: Run[]; next: string }> {
    return this.reads.list(query);
  }

  /** One run without its task runs. */
  async summary(runId: string): Promise<Run> {
    return (await this.reads.summaries([runId]))[0] as Run;
  }

  /** Cancels a run; a finished run is returned unchanged. */
  async cancel(runId: string, reason: string): Promise<Run> {
    checkRunId(runId);
    await this.terminate(runId, reason === "" ? "cancelled by request" : reason, "C");
    return this.get(runId);
  }

  /**
   * A run's timeout timer fired: ends the run TIMED_OUT if its deadline has come (from its creation,
   * or its last resume), else returns that deadline (the run was resumed since the timer was armed).
   */
  async runTimeoutDue(runId: string, loaded: LoadedWorkflow): Promise<number | undefined> {
    const ms = loaded.compiled.runTimeoutMs;
    const [status, gen, createdAt, resumedAt] = await this.deps.redis.hmget(
      this.deps.keys.run(runId).run,
      "s",
      "gen",
      "ct",
      "rt",
    );
    if (status !== "R") return undefined;
    const deadline = Number(resumedAt ?? createdAt) + ms;
    if (deadline > Date.now() + 5) return deadline;
    await this.terminate(runId, `the run timeout of ${ms} ms expired`, "X", Number(gen ?? 0));
    return undefined;
  }

  /**
   * Ends a running run as cancelled (C) or timed out (X), dropping its jobs; false when it was over
   * (or, with `resumeCount`, was resumed since).
   */
  async terminate(runId: string, reason: string, status: "C" | "X", resumeCount?: number): Promise<boolean> {
    const { deps } = this;
    const loaded = await deps.runWorkflows.of(runId);
    if (loaded === undefined) throw notFound(runId);
    const now = Date.now();
    const [outcome, ...jobs] = await deps.steps.cancel(
      runId,
      reason,
      now,
      deps.limits.runRetentionMs,
      status,
      resumeCount,
    );
    if (outcome === "notfound") throw notFound(runId);
    if (outcome !== "cancelled") return false;
    await deps.jobs.drop(runId, loaded, jobs);
    deps.logger.info({ runId, reason }, status === "C" ? "run cancelled" : "run timed out");
    return true;
  }
}

/** Throws INVALID_ARGUMENT unless the id has the shape of a run id. */
export function checkRunId(runId: string): void {
  if (runId === "") throw invalidArgument([{ field: "run_id", description: "is required" }]);
  if (!isRunId(runId))
    throw invalidArgument([{ field: "run_id", description: `"${runId.slice(0, 64)}" is not a run id` }]);
}

/** Bytes a run a trigger echoes takes besides its input: an upper bound. */
function echoBound({ item, loaded }: PreparedRun): number {
  return (
    220 + textSize(loaded.workflow.name) + textSize(item.idempotencyKey) + textSize(item.schedule?.id ?? "")
  );
}
