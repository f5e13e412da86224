import type { RedisClient } from "../../redis/redis.js";
import { anySlotPipeline, type Keys } from "../shared/index.js";

/** A dead-letter entry as the run's hash keeps it (`x:<taskId>`, see FAIL in task-scripts.ts). */
export interface StoredEntry {
  /** The run's resume count when the task failed. */
  g: number;
  /** When it failed for good (ms). */
  t: number;
  /** Queue and handler. */
  q: string;
  h: string;
  /** Attempts made. */
  a: number;
  /** Error type of the last attempt. */
  et: string;
}

/** Where an entry is listed: its queue, its run's workflow, its error type. */
export interface EntryPlace {
  runId: string;
  taskId: string;
  queue: string;
  workflow: string;
  errorType: string;
}

/** Index entries checked per round trip when pruning. */
const INDEX_PAGE = 500;

/** Index names read per round trip when pruning the per-queue, per-workflow and per-type indexes. */
const NAME_PAGE = 100;

/** The member of an entry in the indexes: "<runId>/<taskId>". */
export function memberOf(runId: string, taskId: string): string {
  return `${runId}/${taskId}`;
}

/**
 * The sorted sets that list dead letters (see Keys.deadLetterIndex): one of every entry, one per
 * queue, per workflow and per error type, each scored by the time the task failed. They are plain
 * keys, outside the run's hash slot: the entry itself is written by the run's step, and entering it
 * in the indexes is a separate command, sent first (in the same write): a weftd that dies between
 * the two leaves at most an index member without entry, which listings skip and remove. Removing
 * an entry (a resume, a discard) goes the other way: the step first, then the index members, and a
 * member left behind is skipped and removed the same way. Members of runs past their retention are
 * removed by the reconciler's pruning ({@link DeadLetterIndex.prune}).
 */
export class DeadLetterIndex {
  /** Where the last pruning stopped: which family of indexes, and the position in its names. */
  private cursor = { family: 0, at: 0 };

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  /** The index keys of an entry: every entry, its queue, workflow and error type. */
  indexesOf(place: Omit<EntryPlace, "runId" | "taskId">): string[] {
    const { keys } = this;
    return [
      keys.deadLetterIndex(),
      keys.deadLetterIndex({ queue: place.queue }),
      keys.deadLetterIndex({ workflow: place.workflow }),
      keys.deadLetterIndex({ errorType: place.errorType }),
    ];
  }

  /** The commands that enter an entry in its indexes (sent before the step that writes it). */
  enter(place: EntryPlace, at: number): (redis: RedisClient) => Promise<unknown>[] {
    const member = memberOf(place.runId, place.taskId);
    // Not NX: a member left by a step that failed nothing (a stale report, a timer early) takes
    // the time of the failure that does write the entry.
    return (redis) => [
      ...this.indexesOf(place).map((index) => redis.zadd(index, at, member)),
      redis.zadd(this.keys.deadLetterTypes(), "NX", 0, place.errorType),
    ];
  }

  /**
   * Enters a run's entries in their indexes again: the reconciler's repair of a run it checks, for a
   * crash between an entry's step and its index writes (or index writes that Redis Cluster applied
   * on one node and not on another).
   */
  async repairRun(runId: string): Promise<void> {
    const key = this.keys.run(runId).run;
    const fields = (await this.redis.hkeys(key)).filter((f) => f.startsWith("x:"));
    if (fields.length === 0) return;
    const [workflow, ...raws] = await this.redis.hmget(key, "wf", ...fields);
    const entries: (EntryPlace & { at: number })[] = [];
    fields.forEach((f, i) => {
      const raw = raws[i];
      if (raw === null || raw === undefined || workflow === null || workflow === undefined) return;
      const e = JSON.parse(raw) as StoredEntry;
      entries.push({ runId, taskId: f.slice(2), queue: e.q, workflow, errorType: e.et, at: e.t });
    });
    await this.reenter(entries);
  }

  /** Enters entries again (the reconciler's repair after a crash); members already there stay. */
  async reenter(entries: readonly (EntryPlace & { at: number })[]): Promise<void> {
    if (entries.length === 0) return;
    const pipeline = anySlotPipeline(this.redis);
    for (const e of entries) {
      const member = memberOf(e.runId, e.taskId);
      for (const index of this.indexesOf(e)) pipeline.zadd(index, "NX", e.at, member);
      pipeline.zadd(this.keys.deadLetterTypes(), "NX", 0, e.errorType);
    }
    for (const [err] of (await pipeline.exec()) ?? []) if (err !== null) throw err;
  }

  /** Removes entries from their indexes (after the step that removed them). */
  async remove(places: readonly EntryPlace[]): Promise<void> {
    if (places.length === 0) return;
    const pipeline = anySlotPipeline(this.redis);
    for (const p of places) {
      const member = memberOf(p.runId, p.taskId);
      for (const index of this.indexesOf(p)) pipeline.zrem(index, member);
    }
    for (const [err] of (await pipeline.exec()) ?? []) if (err !== null) throw err;
  }

  /** How many entries the index of every entry holds, and those of some queues (members left behind included). */
  async sizes(queues: readonly string[]): Promise<{ total: number; byQueue: Map<string, number> }> {
    const pipeline = anySlotPipeline(this.redis).zcard(this.keys.deadLetterIndex());
    for (const q of queues) pipeline.zcard(this.keys.deadLetterIndex({ queue: q }));
    const rows = (await pipeline.exec()) ?? [];
    for (const [err] of rows) if (err !== null) throw err;
    const byQueue = new Map<string, number>();
    queues.forEach((q, i) => {
      const n = Number(rows[i + 1]?.[1] ?? 0);
      if (n > 0) byQueue.set(q, n);
    });
    return { total: Number(rows[0]?.[1] ?? 0), byQueue };
  }

  /**
   * Removes the members of runs whose keys expired from every index — the index of all entries,
   * then those of each queue, workflow and error type, in name order — until `deadline` (epoch
   * ms); returns how many it removed. Only members older than the retention can belong to an
   * expired run (a task fails before its run finishes). A call cut short goes on where it stopped
   * the next time.
   */
  async prune(retentionMs: number, deadline: number): Promise<number> {
    const { keys } = this;
    const horizon = Date.now() - retentionMs;
    const families: { names: string; index: (name: string) => string }[] = [
      { names: keys.queueIndex(), index: (queue) => keys.deadLetterIndex({ queue }) },
      { names: keys.workflowIndex(), index: (workflow) => keys.deadLetterIndex({ workflow }) },
      { names: keys.deadLetterTypes(), index: (errorType) => keys.deadLetterIndex({ errorType }) },
    ];
    let removed = 0;
    if (this.cursor.family === 0) {
      removed += await this.pruneIndex(keys.deadLetterIndex(), horizon, deadline);
      this.cursor = { family: 1, at: 0 };
    }
    while (Date.now() < deadline && this.cursor.family <= families.length) {
      const family = families[this.cursor.family - 1] as (typeof families)[number];
      const names = await this.redis.zrange(family.names, this.cursor.at, this.cursor.at + NAME_PAGE - 1);
      for (const name of names) {
        if (Date.now() >= deadline) return removed;
        removed += await this.pruneIndex(family.index(name), horizon, deadline);
        this.cursor.at++;
        // An error type none of the kept entries has any more leaves the list of types.
        if (family.names === keys.deadLetterTypes() && (await this.redis.zcard(family.index(name))) === 0) {
          await this.redis.zrem(family.names, name);
          this.cursor.at--;
        }
      }
      if (names.length < NAME_PAGE) this.cursor = { family: this.cursor.family + 1, at: 0 };
    }
    if (this.cursor.family > families.length) this.cursor = { family: 0, at: 0 };
    return removed;
  }

  private async pruneIndex(index: string, horizon: number, deadline: number): Promise<number> {
    const { redis, keys } = this;
    let removed = 0;
    let kept = 0;
    let members: string[];
    do {
      members = await redis.zrangebyscore(index, "-inf", `(${horizon}`, "LIMIT", kept, INDEX_PAGE);
      if (members.length === 0) break;
      const pipeline = anySlotPipeline(redis);
      for (const m of members) pipeline.exists(keys.run(m.slice(0, m.indexOf("/"))).run);
      const found = (await pipeline.exec()) ?? [];
      for (const [err] of found) if (err !== null) throw err;
      const gone = members.filter((_, i) => found[i]?.[1] === 0);
      if (gone.length > 0) removed += await redis.zrem(index, ...gone);
      kept += members.length - gone.length;
    } while (members.length === INDEX_PAGE && Date.now() < deadline);
    return removed;
  }
}
