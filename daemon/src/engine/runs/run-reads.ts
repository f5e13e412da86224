import { Code, ConnectError } from "@connectrpc/connect";
import { type Run, type RunStatus, type TaskRun, TaskStatus } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { RedisClient } from "../../redis/redis.js";
import type { WorkflowStore } from "../definitions/index.js";
import { AnswerRoom, invalidArgument, type Keys } from "../shared/index.js";
import { type IndexEntry, IndexReader } from "./index-reader.js";
import { type RunHead, readHeads, runInRoom, runWholeBytes, taskRunsInRoom } from "./run-answer.js";
import { RUN_STATUS_CODE } from "./run-view.js";

/**
 * How much older than the run retention an index entry without a run must be before ListRuns or the
 * reconciler prunes it, by default: room for a trigger step that Redis answers late and for the
 * clocks of replicas (an entry is written before its run, its score the creation time by the clock
 * of the replica that triggered the run).
 */
export const INDEX_PRUNE_GRACE_MS = 60_000;

/** A ListRuns filter and page. */
export interface ListRunsQuery {
  workflow: string;
  /** Only runs this schedule started; "" for any run. */
  scheduleId?: string;
  statuses: RunStatus[];
  pageSize: number;
  pageToken: string;
}

/** Why tasks of a queue and handler may not start now ("" when nothing holds them back). */
export interface HoldReasons {
  holdReason(queue: string, handler: string): Promise<string>;
}

/** What the run reads need. */
export interface RunReadsDeps {
  redis: RedisClient;
  keys: Keys;
  workflows: WorkflowStore;
  /** Says why a queued task waits (its queue paused, rate limited or at its concurrency, a circuit breaker). */
  admin: HoldReasons;
  /** Largest answer, in bytes (--max-response-bytes). */
  maxResponseBytes: number;
  /** How long finished runs are kept, in ms (--run-retention): index entries older than it may be pruned. */
  runRetentionMs: number;
  /** How much longer an index entry without its run is kept (see INDEX_PRUNE_GRACE_MS). */
  pruneGraceMs: number;
}

/**
 * The answers that read runs: GetRun, GetTaskRun, ListRuns, and the runs that Trigger and Cancel
 * echo. Each stays within the answer limit (--max-response-bytes): it reads the small fields and
 * the stored sizes first, then only the payloads that fit; what does not fit is left out and named
 * in omitted_fields, or comes in a later page.
 */
export class RunReads {
  constructor(private readonly deps: RunReadsDeps) {}

  /** A run with its task runs from the page token on, as many as fit; `next` is the token of the rest. */
  async get(runId: string, pageToken: string): Promise<{ run: Run; next: string }> {
    const { deps } = this;
    const [head] = await readHeads(deps.redis, deps.keys, [runId]);
    if (head === undefined) throw notFound(runId);
    const loaded = await deps.workflows.get(head.h.wf ?? "", Number(head.h.v));
    const from = decodeTaskToken(pageToken, loaded.compiled.size);
    const room = new AnswerRoom(deps.maxResponseBytes);
    const run = runInRoom(head, deps.keys, room) as Run;
    const next = await taskRunsInRoom(
      deps.redis,
      deps.keys,
      run,
      loaded.compiled,
      from,
      loaded.compiled.size,
      room,
    );
    await room.read(deps.redis);
    await this.holdReasons(run.tasks);
    if (next !== undefined) run.omittedFields.push("tasks");
    return { run, next: next === undefined ? "" : encodeTaskToken(next) };
  }

  /** One task run whole: its output, error and progress (as far as the answer limit allows). */
  async getTask(runId: string, taskId: string): Promise<TaskRun> {
    const { deps } = this;
    const [head] = await readHeads(deps.redis, deps.keys, [runId]);
    if (head === undefined) throw notFound(runId);
    const loaded = await deps.workflows.get(head.h.wf ?? "", Number(head.h.v));
    const task = loaded.compiled.byId.get(taskId);
    if (task === undefined) {
      throw new ConnectError(
        `task "${taskId}" not found in run "${runId}" (workflow "${loaded.workflow.name}" version ${loaded.workflow.version})`,
        Code.NotFound,
      );
    }
    const room = new AnswerRoom(deps.maxResponseBytes);
    const holder = runInRoom({ ...head, inBytes: 0, outBytes: 0, errBytes: 0 }, deps.keys, room) as Run;
    await taskRunsInRoom(deps.redis, deps.keys, holder, loaded.compiled, task.index, 1, room);
    await room.read(deps.redis);
    await this.holdReasons(holder.tasks);
    return holder.tasks[0] as TaskRun;
  }

  /** Runs without their task runs, each with the payloads that fit in `room` (one answer) together. */
  async summaries(
    runIds: readonly string[],
    room = new AnswerRoom(this.deps.maxResponseBytes),
  ): Promise<Run[]> {
    const { deps } = this;
    const heads = await readHeads(deps.redis, deps.keys, runIds);
    const runs = heads.map((head, i) => {
      if (head === undefined) throw notFound(runIds[i] as string);
      const run = runInRoom(head, deps.keys, room);
      if (run === undefined) {
        throw new ConnectError(
          `the answer would exceed --max-response-bytes (${deps.maxResponseBytes}): ask for fewer runs`,
          Code.ResourceExhausted,
        );
      }
      return run;
    });
    await room.read(deps.redis);
    return runs;
  }

  /** One page of runs, newest first: at most `pageSize`, and fewer when more would not fit. */
  async list(query: ListRunsQuery): Promise<{ runs: Run[]; next: string }> {
    const { redis, keys } = this.deps;
    const bySchedule = query.scheduleId !== undefined && query.scheduleId !== "";
    // A schedule's runs have their own index (one key, in the schedule's slot); its runs of one
    // workflow are filtered from it.
    const indexes = bySchedule
      ? [keys.scheduleRuns(query.scheduleId as string)]
      : keys.runIndexes(query.workflow === "" ? undefined : query.workflow);
    const workflow = bySchedule && query.workflow !== "" ? query.workflow : undefined;
    const wanted = new Set(query.statuses.map((s) => RUN_STATUS_CODE.get(s)));
    let cursor = decodeToken(query.pageToken);
    const room = new AnswerRoom(this.deps.maxResponseBytes);
    const runs: Run[] = [];
    const fetch = Math.max(query.pageSize, 50);
    // Every shard of the index (one on one server): each read a share of a page at a time.
    const reader = new IndexReader(
      redis,
      indexes,
      cursor,
      indexes.length === 1 ? fetch + 20 : Math.max(20, Math.ceil((2 * fetch) / indexes.length)),
    );
    let scanned = 0;
    let more = true;
    let full = false;
    // Entries created since this are kept even without a run: see `gone` below.
    const horizon = Date.now() - this.deps.runRetentionMs - this.deps.pruneGraceMs;
    while (more && !full && runs.length < query.pageSize) {
      if (scanned >= query.pageSize * 20 + 1000) break;
      const entries = await reader.next(fetch);
      if (entries.length === 0) {
        more = false;
        break;
      }
      const heads = await readHeads(
        redis,
        keys,
        entries.map((e) => e.id),
      );
      const gone = new Map<string, string[]>();
      let stopped = false;
      for (let i = 0; i < entries.length; i++) {
        if (runs.length === query.pageSize) {
          stopped = true;
          break;
        }
        const entry = entries[i] as IndexEntry & { key: string };
        const head = heads[i];
        if (
          head !== undefined &&
          (wanted.size === 0 || wanted.has(head.h.s)) &&
          (workflow === undefined || head.h.wf === workflow)
        ) {
          if (!this.fits(head, room, runs.length)) {
            // The rest go in the next page, which starts with this run.
            full = true;
            stopped = true;
            break;
          }
          runs.push(runInRoom(head, keys, room) as Run);
        }
        scanned++;
        cursor = { id: entry.id, score: entry.score };
        // A run enters its indexes before its trigger step creates it (on a Cluster, by ZADDs on
        // other nodes that are answered before the step is sent): an entry without a run may be a
        // run being triggered, and removing it would leave that run out of every list for good.
        // Only a run past its retention is gone for good, and it was created before the horizon.
        if (head === undefined && entry.score < horizon) {
          const list = gone.get(entry.key);
          if (list === undefined) gone.set(entry.key, [entry.id]);
          else list.push(entry.id);
        }
      }
      // Runs past their retention leave their index entries behind: prune them.
      for (const [key, ids] of gone) await redis.zrem(key, ...ids);
      more = stopped || reader.more;
    }
    await room.read(redis);
    return { runs, next: more && cursor !== undefined ? encodeToken(cursor) : "" };
  }

  /**
   * Whether a run goes in this page: with all its payloads; or, as the first of its page, with
   * those that fit (the others left out and named).
   */
  private fits(head: RunHead, room: AnswerRoom, inPage: number): boolean {
    return inPage === 0 || runWholeBytes(head) <= room.bytesLeft;
  }

  /** A queued task held back by its queue (paused, rate limited, at its concurrency, a circuit) says so. */
  private async holdReasons(tasks: TaskRun[]): Promise<void> {
    const held = new Map<string, Promise<string>>();
    for (const t of tasks) {
      if (t.status !== TaskStatus.QUEUED || t.waitingReason !== "") continue;
      const key = `${t.queue}|${t.handler}`;
      let reason = held.get(key);
      if (reason === undefined) {
        reason = this.deps.admin.holdReason(t.queue, t.handler);
        held.set(key, reason);
      }
      t.waitingReason = await reason;
    }
  }
}

/** NOT_FOUND for a run id. */
export function notFound(runId: string): ConnectError {
  return new ConnectError(`run "${runId}" not found`, Code.NotFound);
}

function encodeTaskToken(index: number): string {
  return Buffer.from(`t${index}`).toString("base64url");
}

function decodeTaskToken(token: string, size: number): number {
  if (token === "") return 0;
  const match = /^t(\d{1,9})$/.exec(Buffer.from(token, "base64url").toString());
  const index = Number(match?.[1] ?? Number.NaN);
  if (!Number.isInteger(index) || index >= size) {
    throw invalidArgument([{ field: "task_page_token", description: "is not a token returned by GetRun" }]);
  }
  return index;
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
