import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { WorkflowDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../redis/private-redis.js";
import { Keys } from "../shared/index.js";
import { DEFAULT_RETRY_POLICY } from "./retry-policy.js";
import { WorkflowStore } from "./workflow-store.js";

let redisServer: RedisServer;
let redis: Redis;

beforeAll(async () => {
  redisServer = await startRedisServer({ persistence: "none" });
  redis = new Redis(redisServer.url);
});

afterAll(async () => {
  redis?.disconnect();
  await redisServer?.close();
});

/** A store (one replica's) under `prefix`. */
function store(cacheTasks: number, prefix = `test-${randomUUID()}`): WorkflowStore {
  return new WorkflowStore(
    redis,
    new Keys(prefix),
    { maxTasks: 1000, maxPayloadBytes: 1024, cacheTasks },
    { retry: DEFAULT_RETRY_POLICY, heartbeatTimeoutMs: 30_000 },
  );
}

/** A chain of `n` tasks named `<prefix>0..n-1`. */
function chain(name: string, n: number, prefix = "t") {
  return create(WorkflowDefinitionSchema, {
    name,
    tasks: Array.from({ length: n }, (_, i) => ({
      id: `${prefix}${i}`,
      handler: "h",
      dependsOn: i === 0 ? [] : [`${prefix}${i - 1}`],
    })),
  });
}

describe("WorkflowStore", () => {
  it("keeps compiled versions up to a number of tasks and reloads the others from Redis", async () => {
    const workflows = store(1000);
    for (let i = 0; i < 5; i++) await workflows.submit(chain(`w${i}`, 600, `w${i}-`));
    // Generations of at most 1,000 tasks: each 600-task version starts a new one.
    expect(workflows.cached).toEqual({ versions: 2, tasks: 1200 });

    const reloaded = await workflows.get("w0", 1);
    expect(reloaded.workflow.name).toBe("w0");
    expect(reloaded.workflow.version).toBe(1);
    expect(reloaded.workflow.definition?.tasks).toEqual([]);
    expect(reloaded.compiled.size).toBe(600);
    expect(reloaded.compiled.byId.get("w0-599")?.parents).toEqual(["w0-598"]);
    expect(workflows.cached).toEqual({ versions: 2, tasks: 1200 });
  });

  it("loads a version once for concurrent readers", async () => {
    const prefix = `test-${randomUUID()}`;
    await store(10_000, prefix).submit(chain("shared", 50));
    const reader = store(10_000, prefix);
    const loads = await Promise.all(Array.from({ length: 10 }, () => reader.get("shared", 1)));
    for (const loaded of loads) expect(loaded).toBe(loads[0]);
    expect(reader.cached).toEqual({ versions: 1, tasks: 50 });
  });

  it("describes a version with its whole definition and plan", async () => {
    const workflows = store(10_000);
    const def = chain("described", 3);
    const submitted = await workflows.submit(def);
    expect(submitted.workflow.definition?.tasks.map((t) => t.id)).toEqual(["t0", "t1", "t2"]);
    const described = await workflows.describe("described", 0);
    expect(described.workflow.version).toBe(1);
    expect(described.workflow.contentHash).toBe(submitted.workflow.contentHash);
    expect(described.workflow.definition?.tasks.map((t) => [t.id, t.dependsOn])).toEqual([
      ["t0", []],
      ["t1", ["t0"]],
      ["t2", ["t1"]],
    ]);
    expect(described.plan.layers.map((l) => l.taskIds)).toEqual([["t0"], ["t1"], ["t2"]]);
  });
});
