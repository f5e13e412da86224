import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../redis/private-redis.js";
import { type IndexEntry, IndexReader } from "./index-reader.js";

let server: RedisServer;
let redis: Redis;

beforeAll(async () => {
  server = await startRedisServer({ persistence: "none" });
  redis = new Redis(server.url);
});

afterAll(async () => {
  redis?.disconnect();
  await server?.close();
});

/** Every entry of the shards after `after`, read `count` at a time. */
async function readAll(keys: string[], after: IndexEntry | undefined, batch: number, count: number) {
  const reader = new IndexReader(redis, keys, after, batch);
  const out: (IndexEntry & { key: string })[] = [];
  for (;;) {
    const page = await reader.next(count);
    out.push(...page);
    if (page.length < count) break;
  }
  expect(reader.more).toBe(false);
  return out;
}

describe("IndexReader", () => {
  it("reads the shards of an index as one sorted set read newest first, ties by id descending", async () => {
    const keys = ["ir:a", "ir:b", "ir:c"];
    const entries: IndexEntry[] = [];
    // 300 runs of one time (a BatchTrigger's) and 60 of others, over three shards.
    for (let i = 0; i < 360; i++) {
      const entry = { id: `run-${String(i).padStart(3, "0")}`, score: i < 300 ? 5000 : 1000 + i };
      entries.push(entry);
      await redis.zadd(keys[i % 3] as string, entry.score, entry.id);
    }
    const expected = [...entries].sort((x, y) => y.score - x.score || (y.id < x.id ? -1 : 1));
    for (const [batch, count] of [
      [20, 7],
      [5, 50],
      [400, 1],
    ] as const) {
      const got = await readAll(keys, undefined, batch, count);
      expect(got.map((e) => e.id)).toEqual(expected.map((e) => e.id));
      // Each entry says which shard holds it.
      for (const e of got) expect(await redis.zscore(e.key, e.id)).toBe(String(e.score));
    }
    // After a cursor in the middle of the runs that share a time.
    const cursor = expected[123] as IndexEntry;
    expect((await readAll(keys, cursor, 10, 9)).map((e) => e.id)).toEqual(
      expected.slice(124).map((e) => e.id),
    );
  });

  it("reads nothing from empty shards", async () => {
    expect(await readAll(["ir:none-1", "ir:none-2"], undefined, 10, 10)).toEqual([]);
  });
});
