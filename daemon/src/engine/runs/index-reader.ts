import type { RedisClient } from "../../redis/redis.js";

/** An entry of a run index: a run id and its creation time. */
export interface IndexEntry {
  id: string;
  score: number;
}

/** One shard of the index being read. */
interface Shard {
  key: string;
  /** Entries read ahead, in order. */
  ahead: IndexEntry[];
  /** The last entry read from this shard (or the cursor): the next read starts after it. */
  last: IndexEntry | undefined;
  /** Nothing is left after `ahead`. */
  done: boolean;
}

/** Whether `a` comes before `b`: newer first, and among runs of one time, the greater id first. */
function before(a: IndexEntry, b: IndexEntry): boolean {
  return a.score > b.score || (a.score === b.score && a.id > b.id);
}

/**
 * Reads a run index, all its shards (see Keys.runIndexes) as one list, newest first, after a
 * cursor: the order of one sorted set read with ZREVRANGEBYSCORE (score descending, then member
 * descending), whatever the number of shards. Each shard is read `batch` entries at a time, and
 * runs that share a creation time (a BatchTrigger's) are paged through however many there are.
 */
export class IndexReader {
  private readonly shards: Shard[];

  constructor(
    private readonly redis: RedisClient,
    keys: readonly string[],
    after: IndexEntry | undefined,
    private readonly batch: number,
  ) {
    this.shards = keys.map((key) => ({ key, ahead: [], last: after, done: false }));
  }

  /** Whether entries may be left after those returned so far. */
  get more(): boolean {
    return this.shards.some((s) => s.ahead.length > 0 || !s.done);
  }

  /** The next entries, at most `count`, with the key of the shard holding each; fewer only at the end. */
  async next(count: number): Promise<(IndexEntry & { key: string })[]> {
    const out: (IndexEntry & { key: string })[] = [];
    while (out.length < count) {
      // A shard with nothing read ahead may hold the next entry: read it first.
      const empty = this.shards.filter((s) => s.ahead.length === 0 && !s.done);
      if (empty.length > 0) await Promise.all(empty.map((s) => this.read(s)));
      let best: Shard | undefined;
      for (const s of this.shards) {
        const head = s.ahead[0];
        if (head !== undefined && (best === undefined || before(head, best.ahead[0] as IndexEntry))) best = s;
      }
      if (best === undefined) break;
      out.push({ ...(best.ahead.shift() as IndexEntry), key: best.key });
    }
    return out;
  }

  /** Reads the next entries of a shard after its last one. */
  private async read(shard: Shard): Promise<void> {
    const { last } = shard;
    const max = last === undefined ? "+inf" : String(last.score);
    // Entries of the last one's time come first, in descending id order: those up to it are
    // skipped, a window further each time a whole window was (runs of one BatchTrigger share a time).
    for (let offset = 0; ; offset += this.batch) {
      const raw = await this.redis.zrevrangebyscore(
        shard.key,
        max,
        "-inf",
        "WITHSCORES",
        "LIMIT",
        offset,
        this.batch,
      );
      const entries: IndexEntry[] = [];
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const id = raw[i] as string;
        const score = Number(raw[i + 1]);
        if (last !== undefined && score === last.score && id >= last.id) continue;
        entries.push({ id, score });
      }
      shard.done = raw.length / 2 < this.batch;
      if (entries.length > 0 || shard.done) {
        shard.ahead = entries;
        shard.last = entries[entries.length - 1] ?? last;
        return;
      }
    }
  }
}
