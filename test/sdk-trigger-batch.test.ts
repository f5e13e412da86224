/**
 * The SDK groups concurrent trigger() calls into BatchTrigger calls, against a real weftd and Redis:
 * each call keeps what a Trigger call would have answered it (its run, its error, its idempotency
 * key's run), a bad request never fails the good ones of its batch, and the batching can be turned off.
 */
import { randomUUID } from "node:crypto";
import { Code, type Interceptor } from "@connectrpc/connect";
import {
  createWeftClient,
  fromValue,
  InvalidArgumentError,
  type JsonValue,
  type WeftClient,
  WeftError,
  WorkflowNotFoundError,
  workflow,
} from "@weft/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess } from "./support/index.js";

let redis: RedisServer;
let weftd: WeftdProcess;

beforeAll(async () => {
  redis = await startTestRedis();
  // Runs of the 400-task workflow below: two fit in one call, three do not.
  weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--max-tasks-per-workflow", "1000"] });
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

function counted(options: Parameters<typeof createWeftClient>[0] extends infer O ? Partial<O> : never = {}) {
  const counts = new Map<string, number>();
  const sizes: number[] = [];
  const interceptor: Interceptor = (next) => (req) => {
    counts.set(req.method.name, (counts.get(req.method.name) ?? 0) + 1);
    if (req.method.name === "BatchTrigger" && !req.stream) {
      sizes.push((req.message as unknown as { requests: unknown[] }).requests.length);
    }
    return next(req);
  };
  const client = createWeftClient({ address: weftd.address, ...options, interceptors: [interceptor] });
  return { client, counts, sizes };
}

async function oneTaskWorkflow(client: WeftClient): Promise<string> {
  const name = `one-${randomUUID().slice(0, 8)}`;
  await client.submitWorkflow(workflow(name).task("a", { queue: name }));
  return name;
}

/** What a call settled with, comparable across clients: the run's workflow and input, or the error. */
async function outcome(p: Promise<{ run: { workflow: string; input?: unknown }; created: boolean }>) {
  try {
    const { run, created } = await p;
    return { ok: true, workflow: run.workflow, created };
  } catch (err) {
    if (!(err instanceof WeftError)) throw err;
    return { ok: false, name: err.constructor.name, code: err.code, message: err.message };
  }
}

/** A JSON value nested deeper than weftd allows (INVALID_ARGUMENT naming the input). */
function tooDeep(): JsonValue {
  let v: JsonValue = 1;
  for (let i = 0; i < 40; i++) v = [v];
  return v;
}

describe("trigger() batching", () => {
  it("sends the calls of one tick as one BatchTrigger, each caller getting its own run", async () => {
    const { client, counts, sizes } = counted();
    const name = await oneTaskWorkflow(client);
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => client.trigger(name, { i })));
    expect(counts.get("BatchTrigger")).toBe(1);
    expect(counts.get("Trigger")).toBeUndefined();
    expect(sizes).toEqual([300]);
    expect(new Set(results.map((r) => r.run.id)).size).toBe(300);
    results.forEach((r, i) => {
      expect(r.created).toBe(true);
      expect(fromValue(r.run.input)).toEqual({ i });
    });
    // A lone call is a Trigger call.
    await client.trigger(name, null);
    expect(counts.get("Trigger")).toBe(1);
    client.close();
  });

  it("answers a bad request among good ones with Trigger's own error, and starts the good ones", async () => {
    const { client, counts } = counted();
    const { client: lone } = counted({ batchTriggers: false });
    const name = await oneTaskWorkflow(client);
    const missing = `missing-${randomUUID().slice(0, 8)}`;
    const calls = (c: WeftClient) => [
      c.trigger(name, 1),
      c.trigger(missing, 2),
      c.trigger(name, tooDeep()),
      c.trigger(name, 4, { idempotencyKey: "k".repeat(300) }),
      c.trigger("bad name!", 5),
      c.trigger(missing, 6, { version: 3 }),
      c.trigger(name, 7),
    ];
    const batched = await Promise.all(calls(client).map(outcome));
    const alone = await Promise.all(calls(lone).map(outcome));
    expect(batched).toEqual(alone);
    expect(batched.map((o) => o.ok)).toEqual([true, false, false, false, false, false, true]);
    expect(batched[1]).toMatchObject({ name: WorkflowNotFoundError.name, code: Code.NotFound });
    expect(batched[2]).toMatchObject({ name: InvalidArgumentError.name, code: Code.InvalidArgument });
    expect(batched[3]).toMatchObject({
      code: Code.InvalidArgument,
      message: "idempotency_key: must be at most 256 characters",
    });
    expect((counts.get("BatchTrigger") ?? 0) >= 1).toBe(true);
    client.close();
    lone.close();
  });

  it("keeps idempotency keys within a batch: the same key gives the same run, created once", async () => {
    const { client, counts } = counted();
    const name = await oneTaskWorkflow(client);
    const key = `key-${randomUUID()}`;
    const earlier = await client.trigger(name, 0, { idempotencyKey: `${key}-old` });
    const [a, b, c, d] = await Promise.all([
      client.trigger(name, 1, { idempotencyKey: key }),
      client.trigger(name, 2, { idempotencyKey: key }),
      client.trigger(name, 3, { idempotencyKey: `${key}-old` }),
      client.trigger(name, 4, { idempotencyKey: `${key}-other` }),
    ]);
    expect(counts.get("BatchTrigger")).toBe(1);
    expect(b?.run.id).toBe(a?.run.id);
    expect([a?.created, b?.created]).toEqual([true, false]);
    // The run the key started, with the input of the call that created it.
    expect(fromValue(b?.run.input)).toBe(1);
    expect(c?.run.id).toBe(earlier.run.id);
    expect(c?.created).toBe(false);
    expect(d?.created).toBe(true);
    expect(d?.run.id).not.toBe(a?.run.id);
    client.close();
  });

  it("splits a batch whose runs hold too many tasks together, so that every run starts", async () => {
    const { client, sizes } = counted();
    const name = `wide-${randomUUID().slice(0, 8)}`;
    await client.submitWorkflow({
      name,
      tasks: Array.from({ length: 400 }, (_, i) => ({ id: `t${i}`, handler: "h", queue: name })),
    });
    const results = await Promise.all(Array.from({ length: 5 }, (_, i) => client.trigger(name, i)));
    expect(results.every((r) => r.created)).toBe(true);
    expect(new Set(results.map((r) => r.run.id)).size).toBe(5);
    // 5 runs (2,000 tasks) refused, then halves of 3 (refused) and 2, then 2 and 1 (a Trigger).
    expect(sizes).toEqual([5, 3, 2, 2]);
    client.close();
  });

  it("sends each call as its own Trigger with batchTriggers: false, and checks the batching options", async () => {
    const { client, counts } = counted({ batchTriggers: false });
    const name = await oneTaskWorkflow(client);
    await Promise.all(Array.from({ length: 5 }, (_, i) => client.trigger(name, i)));
    expect(counts.get("Trigger")).toBe(5);
    expect(counts.get("BatchTrigger")).toBeUndefined();
    client.close();
    const windowed = counted({ batchTriggers: { windowMs: 20, maxSize: 2 } });
    await Promise.all(Array.from({ length: 5 }, (_, i) => windowed.client.trigger(name, i)));
    expect(windowed.sizes).toEqual([2, 2]);
    expect(windowed.counts.get("Trigger")).toBe(1);
    windowed.client.close();
    expect(() => createWeftClient({ address: weftd.address, batchTriggers: { maxSize: 1001 } })).toThrow(
      "batchTriggers.maxSize must be an integer from 1 to 1000, got 1001",
    );
    expect(() => createWeftClient({ address: weftd.address, batchTriggers: { windowMs: -1 } })).toThrow(
      "batchTriggers.windowMs must be 0 to 1000 ms, got -1",
    );
  });
});
