import type { RedisClient } from "../../redis/redis.js";
import type { Keys } from "../shared/index.js";

/**
 * The writes that go with run steps outside the run's own keys: the recently-touched marks (by
 * shard of the recently-touched set, see the reconciler) and the list-index entries of runs being
 * triggered (by shard of each index). Each is gathered into one ZADD per key for the runs of a
 * call or a tick.
 */
export class RunMarks {
  /** Runs finished in this tick, to leave the recently-touched set in one ZREM per shard. */
  private finished: string[] = [];
  /** Run id → the indexes a run being triggered enters, and its creation time. */
  private readonly indexing = new Map<string, { indexes: string[]; now: number }>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  /** The ZADDs that mark runs as touched at `now`: one per shard of the recently-touched set. */
  mark(runIds: readonly string[], now: number): Promise<unknown>[] {
    const byShard = new Map<string, (string | number)[]>();
    for (const id of runIds) {
      const dirty = this.keys.dirtyOf(id);
      let marks = byShard.get(dirty);
      if (marks === undefined) {
        marks = [];
        byShard.set(dirty, marks);
      }
      marks.push(now, id);
    }
    return [...byShard].map(([dirty, marks]) => this.redis.zadd(dirty, ...marks));
  }

  /** Remembers the list indexes a run being triggered enters with its trigger step (see {@link enter}). */
  willEnter(runId: string, indexes: string[], now: number): void {
    this.indexing.set(runId, { indexes, now });
  }

  /** The ZADDs that enter the runs of a trigger batch in their list indexes: one per index. */
  enter(runIds: readonly string[]): Promise<unknown>[] {
    const members = new Map<string, (string | number)[]>();
    for (const id of runIds) {
      const entry = this.indexing.get(id);
      if (entry === undefined) continue;
      this.indexing.delete(id);
      for (const index of entry.indexes) {
        let list = members.get(index);
        if (list === undefined) {
          list = [];
          members.set(index, list);
        }
        list.push(entry.now, id);
      }
    }
    return [...members].map(([index, list]) => this.redis.zadd(index, "NX", ...list));
  }

  /** Takes a run that a step just finished out of the recently-touched set (with the others of the tick). */
  settled(runId: string): void {
    if (this.finished.length === 0) {
      process.nextTick(() => {
        const runIds = this.finished;
        this.finished = [];
        const byShard = new Map<string, string[]>();
        for (const id of runIds) {
          const dirty = this.keys.dirtyOf(id);
          const list = byShard.get(dirty);
          if (list === undefined) byShard.set(dirty, [id]);
          else list.push(id);
        }
        // Should the ZREM fail, the reconciler checks these runs once they are quiet, and forgets them.
        for (const [dirty, ids] of byShard) this.redis.zrem(dirty, ...ids).catch(() => {});
      });
    }
    this.finished.push(runId);
  }
}
