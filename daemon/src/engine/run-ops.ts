import type { JsonValue } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Run, RunSchema, RunStatus, TaskStatus } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { Engine } from "./engine.js";
import { idempotentRunId, isRunId, newRunId } from "./ids.js";
import { jsonValue, RUN_STATUS_CODE, runFromHash } from "./run-view.js";
import { invalidArgument } from "./violations.js";
import type { LoadedWorkflow } from "./workflow-store.js";

const RUN_FIELDS = ["id", "wf", "v", "s", "in", "out", "ct", "ft", "idem", "err", "seq"] as const;

/** One run to start: what a TriggerRequest holds. */
export interface TriggerItem {
  workflow: string;
  /** 0: the latest. */
  version: number;
  input: JsonValue | undefined;
  /** "" for none. */
  idempotencyKey: string;
}

interface PreparedRun {
  item: TriggerItem;
  loaded: LoadedWorkflow;
  inputText: string;
  runId: string;
}

/** A ListRuns filter and page. */
export interface ListRunsQuery {
  workflow: string;
  statuses: RunStatus[];
  pageSize: number;
  pageToken: string;
}

/** Starting, reading, listing and cancelling runs. */
export class RunOps {
  constructor(private readonly engine: Engine) {}

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
    const { engine } = this;
    const max = engine.options.maxPayloadBytes;
    const loads = new Map<string, Promise<LoadedWorkflow>>();
    const checked = await Promise.allSettled(
      items.map(async (item, i) => {
        const key = `${item.workflow}@${item.version}`;
        let load = loads.get(key);
        if (load === undefined) {
          load = engine.workflows.get(item.workflow, item.version);
          loads.set(key, load);
        }
        const loaded = await load.catch((err: unknown) => {
          const error = ConnectError.from(err);
          const field = fieldOf(i, "workflow");
          if (error.code !== Code.NotFound || field === "workflow") throw err;
          throw new ConnectError(`${field}: ${error.rawMessage}`, Code.NotFound);
        });
        const inputText = JSON.stringify(item.input ?? null);
        const bytes = Buffer.byteLength(inputText);
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
        const [fresh] = await engine.steps.trigger(
          runId,
          loaded.workflow.name,
          loaded.workflow.version,
          inputText,
          now,
          item.idempotencyKey,
          table,
          [engine.keys.runIndex(), engine.keys.runIndex(loaded.workflow.name)],
        );
        engine.rememberRun(runId, loaded.workflow.name, loaded.workflow.version);
        return fresh === 1;
      }),
    );
    const started = runs.filter((_, i) => created[i]);
    await engine.timers.schedule(
      started
        .filter(({ loaded }) => loaded.compiled.runTimeoutMs > 0)
        .map(({ runId, loaded }) => ({
          data: { kind: "run-timeout" as const, runId },
          delayMs: loaded.compiled.runTimeoutMs,
        })),
    );
    await engine.enqueueAll(
      started.map(({ runId, loaded }) => ({ runId, loaded, taskIds: loaded.compiled.roots })),
    );
    return Promise.all(
      runs.map(async ({ item, loaded, inputText, runId }, i) => {
        if (!created[i]) return { run: await this.summary(runId), created: false };
        engine.logger.debug(
          { runId, workflow: item.workflow, version: loaded.workflow.version },
          "run started",
        );
        // What the trigger step wrote: RUN_STARTED plus one TASK_QUEUED per root.
        const run = create(RunSchema, {
          id: runId,
          workflow: loaded.workflow.name,
          workflowVersion: loaded.workflow.version,
          status: RunStatus.RUNNING,
          input: jsonValue(inputText),
          createTime: timestampFromMs(now),
          idempotencyKey: item.idempotencyKey,
          lastSequence: BigInt(1 + loaded.compiled.roots.length),
        });
        return { run, created: true };
      }),
    );
  }

  /** A run without its task runs. */
  async summary(runId: string): Promise<Run> {
    const h = await this.engine.redis.hgetall(this.engine.keys.run(runId).run);
    if (h.id === undefined) throw notFound(runId);
    return runFromHash(h);
  }

  /** A run with every task run. */
  async get(runId: string): Promise<Run> {
    checkRunId(runId);
    const k = this.engine.keys.run(runId);
    const [run, tasks] = await Promise.all([
      this.engine.redis.hgetall(k.run),
      this.engine.redis.hgetall(k.tasks),
    ]);
    if (run.id === undefined) throw notFound(runId);
    const loaded = await this.engine.workflows.get(run.wf ?? "", Number(run.v));
    const view = runFromHash(run, { compiled: loaded.compiled, hash: tasks });
    // A queued task held back by its queue (paused, rate limited, at its concurrency) says so.
    const held = new Map<string, Promise<string>>();
    for (const t of view.tasks) {
      if (t.status !== TaskStatus.QUEUED || t.waitingReason !== "") continue;
      let reason = held.get(t.queue);
      if (reason === undefined) {
        reason = this.engine.admin.holdReason(t.queue);
        held.set(t.queue, reason);
      }
      t.waitingReason = await reason;
    }
    return view;
  }

  /** One page of runs, newest first. */
  async list(query: ListRunsQuery): Promise<{ runs: Run[]; next: string }> {
    const { redis, keys } = this.engine;
    const index = keys.runIndex(query.workflow === "" ? undefined : query.workflow);
    const wanted = new Set(query.statuses.map((s) => RUN_STATUS_CODE.get(s)));
    let cursor = decodeToken(query.pageToken);
    const runs: Run[] = [];
    const fetch = Math.max(query.pageSize, 50);
    let scanned = 0;
    let more = true;
    while (more && runs.length < query.pageSize && scanned < query.pageSize * 20 + 1000) {
      const max = cursor === undefined ? "+inf" : String(cursor.score);
      // A few extra entries cover those sharing the cursor's score, skipped below.
      const raw = await redis.zrevrangebyscore(index, max, "-inf", "WITHSCORES", "LIMIT", 0, fetch + 20);
      const entries: { id: string; score: number }[] = [];
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const id = raw[i] as string;
        const score = Number(raw[i + 1]);
        // Equal scores come in descending member order: skip up to the cursor.
        if (cursor !== undefined && score === cursor.score && id >= cursor.id) continue;
        entries.push({ id, score });
      }
      more = raw.length / 2 === fetch + 20;
      const pipeline = redis.pipeline();
      for (const e of entries) pipeline.hmget(keys.run(e.id).run, ...RUN_FIELDS);
      const rows = entries.length === 0 ? [] : ((await pipeline.exec()) ?? []);
      const gone: string[] = [];
      for (let i = 0; i < entries.length; i++) {
        if (runs.length === query.pageSize) {
          more = true;
          break;
        }
        const entry = entries[i] as { id: string; score: number };
        scanned++;
        cursor = entry;
        const values = rows[i]?.[1] as (string | null)[] | undefined;
        if (values === undefined || values[0] === null) {
          gone.push(entry.id);
          continue;
        }
        const h: Record<string, string> = {};
        RUN_FIELDS.forEach((f, j) => {
          const v = values[j];
          if (v !== null && v !== undefined) h[f] = v;
        });
        if (wanted.size === 0 || wanted.has(h.s)) runs.push(runFromHash(h));
      }
      // Runs past their retention leave their index entries behind: prune them.
      if (gone.length > 0) await redis.zrem(index, ...gone);
    }
    return { runs, next: more && cursor !== undefined ? encodeToken(cursor) : "" };
  }

  /** Cancels a run; a finished run is returned unchanged. */
  async cancel(runId: string, reason: string): Promise<Run> {
    checkRunId(runId);
    await this.terminate(runId, reason === "" ? "cancelled by request" : reason, "C");
    return this.get(runId);
  }

  /** Ends a running run as cancelled (C) or timed out (X), dropping its jobs; false when it was over. */
  async terminate(runId: string, reason: string, status: "C" | "X"): Promise<boolean> {
    const { engine } = this;
    const loaded = await engine.workflowOf(runId);
    if (loaded === undefined) throw notFound(runId);
    const now = Date.now();
    const [outcome, ...jobs] = await engine.steps.cancel(
      runId,
      reason,
      now,
      engine.options.runRetentionMs,
      status,
    );
    if (outcome === "notfound") throw notFound(runId);
    if (outcome !== "cancelled") return false;
    await engine.dropJobs(runId, loaded, jobs);
    engine.logger.info({ runId, reason }, status === "C" ? "run cancelled" : "run timed out");
    return true;
  }
}

/** NOT_FOUND for a run id. */
export function notFound(runId: string): ConnectError {
  return new ConnectError(`run "${runId}" not found`, Code.NotFound);
}

/** Throws INVALID_ARGUMENT unless the id has the shape of a run id. */
export function checkRunId(runId: string, field = "run_id"): void {
  if (runId === "") throw invalidArgument([{ field, description: "is required" }]);
  if (!isRunId(runId))
    throw invalidArgument([{ field, description: `"${runId.slice(0, 64)}" is not a run id` }]);
}

function encodeToken(c: { id: string; score: number }): string {
  return Buffer.from(JSON.stringify([c.score, c.id])).toString("base64url");
}

function decodeToken(token: string): { id: string; score: number } | undefined {
  if (token === "") return undefined;
  try {
    const [score, id] = JSON.parse(Buffer.from(token, "base64url").toString()) as [unknown, unknown];
    if (typeof score === "number" && typeof id === "string") return { score, id };
  } catch {
    // fall through to the error below
  }
  throw invalidArgument([{ field: "page_token", description: "is not a token returned by ListRuns" }]);
}
