import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { logThrottle } from "../../observability/log-throttle.js";
import type { RedisClient } from "../../redis/redis.js";
import type { LoadedWorkflow } from "../definitions/index.js";
import type { TaskQueues, Timers } from "../dispatch/index.js";
import { anySlotPipeline, BackoffLoop, jobIdOf, type Keys } from "../shared/index.js";
import { jobSpec } from "./run-jobs.js";
import type { RunSteps } from "./run-steps.js";
import type { TaskRecord } from "./run-view.js";
import type { RunWorkflows } from "./run-workflows.js";

// Removes a run from the dirty set only if no step touched it since it was read.
const FORGET = `
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`;

// Takes the lock when it is free or already ours: a pass that Redis failed mid-way could not
// release it, and this replica need not wait for it to expire.
const TAKE_LOCK = `
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`;

const RELEASE_LOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** Runs read from the recently-touched set at a time. */
const PAGE = 200;

/** Run index entries checked per round trip when pruning. */
const INDEX_PAGE = 500;

/** Task records read per round trip when a run is checked. */
const RECORDS_PAGE = 1000;

/** How often one replica prunes the run indexes, at most. */
const PRUNE_EVERY_MS = 60_000;

/** Workflow names read per round trip when pruning their run indexes. */
const WORKFLOW_PAGE = 100;

/** How long a pass holds the reconciler's lock, at most; a pass stops after half of it. */
const LOCK_MS = 30_000;

/**
 * Longest pause between passes after failures in a row (Redis down): what a run a crash cut
 * short may wait, beyond `reconcileAfterMs`, once Redis is back.
 */
const MAX_PAUSE_MS = 20_000;

/** What the reconciler works with. */
export interface ReconcilerDeps {
  redis: RedisClient;
  keys: Keys;
  logger: Logger;
  runWorkflows: RunWorkflows;
  steps: RunSteps;
  queues: TaskQueues;
  timers: Timers;
  settings: {
    /** How long a run must be quiet before it is checked, in ms. */
    reconcileAfterMs: number;
    /** How long finished runs are kept, in ms. */
    runRetentionMs: number;
    /** How much longer an index entry without its run is kept (see EngineOptions.indexPruneGraceMs). */
    pruneGraceMs: number;
  };
  /** What the parts built on runs add to a pass (dead letters: their indexes' repair and pruning). */
  extras?: ReconcilerExtras;
}

/** What other parts check in a pass, through the reconciler's lock. */
export interface ReconcilerExtras {
  /** Called for each run checked, after the run's own checks. */
  checked(runId: string): Promise<void>;
  /** Called with the index pruning (at most once a minute), until `deadline` (epoch ms); returns entries removed. */
  prune(deadline: number): Promise<number>;
}

/**
 * Finishes run steps that a crash cut short. Every step marks its run in a
 * sorted set before it runs (and a step that finishes a run takes it out
 * again); once a run has been quiet for a while, one replica at a time checks
 * it: every queued or retrying task must have its BullMQ job (re-added with
 * its deterministic id otherwise), and a run whose tasks are all final must be
 * finished. Consistent runs leave the set. A pass goes on, a page at a time,
 * until no quiet run is left or it has used half its lock's time.
 *
 * A pass also prunes the run indexes (ListRuns's sorted sets) once a minute:
 * a run's keys expire when its retention ends, but its index entries stay
 * until something removes them.
 */
export class Reconciler {
  private loop: BackoffLoop | undefined;
  private passing = false;
  private prunedAt = 0;
  /** Where the last pruning stopped: the index of every run (-1), or a workflow's, by position. */
  private pruneCursor = -1;
  private readonly owner = randomUUID();

  constructor(private readonly deps: ReconcilerDeps) {}

  /** Runs a pass every half `reconcileAfterMs`; after failures, up to {@link MAX_PAUSE_MS} apart. */
  start(): void {
    const everyMs = Math.max(200, Math.floor(this.deps.settings.reconcileAfterMs / 2));
    const log = logThrottle(this.deps.logger);
    this.loop ??= new BackoffLoop(() => this.pass(), {
      everyMs,
      maxMs: MAX_PAUSE_MS,
      onError: (err, retryInMs) => log.warn({ err, retryInMs }, "reconciliation pass failed"),
    });
    this.loop.start();
  }

  stop(): void {
    this.loop?.stop();
  }

  /** One pass over the runs that have been quiet for long enough; returns how many it checked. */
  async pass(): Promise<number> {
    // One pass at a time here too: the lock lets this replica in again.
    if (this.passing) return 0;
    this.passing = true;
    try {
      const { redis, keys } = this.deps;
      if ((await redis.eval(TAKE_LOCK, 1, keys.reconcilerLock(), this.owner, LOCK_MS)) !== 1) return 0;
      return await this.passLocked(Date.now(), LOCK_MS);
    } finally {
      this.passing = false;
    }
  }

  private async passLocked(started: number, lockMs: number): Promise<number> {
    const { deps } = this;
    const { redis, keys } = deps;
    let checked = 0;
    const inTime = () => Date.now() - started < lockMs / 2;
    try {
      const quietSince = started - deps.settings.reconcileAfterMs;
      // Every shard of the recently-touched set (one on one server, one per shard tag on a Cluster).
      for (const dirty of keys.dirtyShards()) {
        if (!inTime()) break;
        let entries: string[];
        do {
          // Checked runs leave the set (or get a newer score), so each page starts from the lowest score.
          entries = await redis.zrangebyscore(dirty, "-inf", quietSince, "WITHSCORES", "LIMIT", 0, PAGE);
          for (let i = 0; i + 1 < entries.length; i += 2) {
            const runId = entries[i] as string;
            const score = entries[i + 1] as string;
            await this.check(runId);
            await deps.extras?.checked(runId);
            await redis.eval(FORGET, 1, dirty, runId, score);
            checked++;
          }
        } while (entries.length === 2 * PAGE && inTime());
      }
      if (started - this.prunedAt >= PRUNE_EVERY_MS) {
        this.prunedAt = started;
        await this.pruneIndexes(started + lockMs / 2);
        await deps.extras?.prune(started + lockMs / 2);
      }
    } finally {
      await redis.eval(RELEASE_LOCK, 1, keys.reconcilerLock(), this.owner);
    }
    return checked;
  }

  /**
   * Removes the entries of runs whose keys have expired from the index of
   * every run and from each workflow's, in name order, until `deadline` (epoch
   * ms); returns how many it removed. A call cut short by its deadline leaves
   * a cursor, and the next call goes on from there. Only runs created before
   * the retention horizon (less the prune grace: an entry is written before its run) can have
   * expired, so only those are checked; a run older than that which is still running (or still
   * kept) stays.
   */
  async pruneIndexes(deadline = Number.POSITIVE_INFINITY): Promise<number> {
    const { redis, keys } = this.deps;
    const horizon = Date.now() - this.deps.settings.runRetentionMs - this.deps.settings.pruneGraceMs;
    let removed = 0;
    if (this.pruneCursor === -1) {
      for (const index of keys.runIndexes()) removed += await this.pruneIndex(index, horizon, deadline);
      this.pruneCursor = 0;
    }
    while (Date.now() < deadline) {
      const from = this.pruneCursor;
      const names = await redis.zrange(keys.workflowIndex(), from, from + WORKFLOW_PAGE - 1);
      for (const name of names) {
        if (Date.now() >= deadline) return removed;
        for (const index of keys.runIndexes(name)) removed += await this.pruneIndex(index, horizon, deadline);
        this.pruneCursor++;
      }
      if (names.length < WORKFLOW_PAGE) {
        this.pruneCursor = -1;
        break;
      }
    }
    return removed;
  }

  private async pruneIndex(index: string, horizon: number, deadline: number): Promise<number> {
    const { redis, keys } = this.deps;
    let removed = 0;
    // Entries still kept stay ahead of the next page; removed ones leave it.
    let kept = 0;
    let ids: string[];
    do {
      ids = await redis.zrangebyscore(index, "-inf", `(${horizon}`, "LIMIT", kept, INDEX_PAGE);
      if (ids.length === 0) break;
      // The runs' keys are in as many slots as runs: spread by node on a Cluster.
      const pipeline = anySlotPipeline(redis);
      for (const id of ids) pipeline.exists(keys.run(id).run);
      const found = (await pipeline.exec()) ?? [];
      for (const [err] of found) if (err !== null) throw err;
      const gone = ids.filter((_, i) => found[i]?.[1] === 0);
      if (gone.length > 0) removed += await redis.zrem(index, ...gone);
      kept += ids.length - gone.length;
    } while (ids.length === INDEX_PAGE && Date.now() < deadline);
    return removed;
  }

  private async check(runId: string): Promise<void> {
    const { deps } = this;
    const k = deps.keys.run(runId);
    const [status, remaining, createdAt, resumedAt] = await deps.redis.hmget(k.run, "s", "rem", "ct", "rt");
    if (status !== "R") return;
    const loaded = await deps.runWorkflows.of(runId);
    if (loaded === undefined) return;
    if (remaining === "0") {
      await deps.steps.finish(runId, Date.now(), deps.settings.runRetentionMs, loaded.compiled.leaves);
      return;
    }
    // A trigger (or resume) cut short may have left the run without its timeout's timer (kept if it
    // is there). A resumed run's timeout runs from its resume.
    const runTimeoutMs = loaded.compiled.runTimeoutMs;
    if (runTimeoutMs > 0) {
      await deps.timers.schedule([
        {
          data: { kind: "run-timeout", runId },
          delayMs: Math.max(0, Number(resumedAt ?? createdAt) + runTimeoutMs - Date.now()),
        },
      ]);
    }
    // Parent counters (d:<id>) and outputs (o:<id>) share the hash (task ids hold no colon): the
    // field names first, then the records alone, 1,000 at a time.
    const taskIds = (await deps.redis.hkeys(k.tasks)).filter((field) => !field.includes(":"));
    const missing: string[] = [];
    const now = Date.now();
    for (let i = 0; i < taskIds.length; i += RECORDS_PAGE) {
      const page = taskIds.slice(i, i + RECORDS_PAGE);
      const records = await deps.redis.hmget(k.tasks, ...page);
      for (const [j, taskId] of page.entries()) {
        const raw = records[j];
        if (raw === null || raw === undefined) continue;
        if (await this.requeue(runId, loaded, taskId, JSON.parse(raw) as TaskRecord, now))
          missing.push(taskId);
      }
    }
    if (missing.length > 0)
      deps.logger.warn({ runId, tasks: missing }, "re-enqueued tasks a crash left without a job");
  }

  /** Re-adds the job of a queued or retrying task that has none; true when it did. */
  private async requeue(
    runId: string,
    loaded: LoadedWorkflow,
    taskId: string,
    record: TaskRecord,
    now: number,
  ): Promise<boolean> {
    const { deps } = this;
    if (record.s !== "Q" && record.s !== "T") return false;
    const task = loaded.compiled.byId.get(taskId);
    if (task === undefined) return false;
    const jobId = jobIdOf(runId, taskId);
    const state = await deps.queues.state(task.queue, jobId);
    if (state !== "unknown" && state !== "completed" && state !== "failed") return false;
    // A finished job of a queued task is one an earlier round of a resumed run left, or one whose
    // run step was lost (a write acknowledged by a Redis primary that died before its replica had
    // it): it goes, or the deterministic id would keep the new one out.
    if (state !== "unknown" && !(await deps.queues.remove(task.queue, jobId))) return false;
    const delayMs = record.s === "T" && record.na !== undefined ? Math.max(0, record.na - now) : undefined;
    await deps.queues.add([jobSpec(runId, loaded, task, delayMs)]);
    // With the job, its schedule-to-start timer may be missing too.
    if (record.s === "Q" && task.scheduleToStartMs > 0 && record.qt !== undefined) {
      await deps.timers.schedule([
        {
          data: { kind: "schedule-to-start", runId, taskId },
          delayMs: Math.max(0, record.qt + task.scheduleToStartMs - now),
        },
      ]);
    }
    return true;
  }
}
