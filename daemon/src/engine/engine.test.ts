import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type TaskDefinitionSchema, WorkflowDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../private-redis.js";
import { ENQUEUE_CHUNK, Engine, type EngineOptions } from "./engine.js";
import { jobIdOf } from "./ids.js";
import { defaultPolicy } from "./policy.js";

type TaskInit = MessageInitShape<typeof TaskDefinitionSchema>;

let redisServer: RedisServer;
let redis: Redis;
const engines: Engine[] = [];

beforeAll(async () => {
  redisServer = await startRedisServer({ persistence: "none" });
  redis = new Redis(redisServer.url);
});

afterEach(async () => {
  for (const engine of engines.splice(0)) await engine.close();
});

afterAll(async () => {
  redis?.disconnect();
  await redisServer?.close();
});

const OPTIONS: EngineOptions = {
  prefix: "",
  runRetentionMs: 60_000,
  pollWaitCapMs: 1000,
  maxTasksPerWorkflow: 10_000,
  maxPayloadBytes: 1 << 20,
  defaultHeartbeatTimeoutMs: 30_000,
  stalledIntervalMs: 60_000,
  maxWatchersPerReplica: 100,
  reconcileAfterMs: 60_000,
};

/** An engine (a replica) on the shared Redis; replicas of one test share a prefix. */
async function openEngine(prefix: string): Promise<Engine> {
  const engine = await Engine.open(
    redisServer.url,
    redis,
    { ...OPTIONS, prefix },
    defaultPolicy(),
    pino({ level: "silent" }),
  );
  engines.push(engine);
  return engine;
}

function definition(name: string, tasks: TaskInit[]) {
  return create(WorkflowDefinitionSchema, { name, tasks });
}

function parallel(name: string, n: number, queue: string) {
  return definition(
    name,
    Array.from({ length: n }, (_, i) => ({ id: `t${i}`, handler: "h", queue })),
  );
}

/** Ids of every waiting job of a task queue. */
async function waitingJobIds(engine: Engine, queue: string): Promise<string[]> {
  const jobs = await engine.queues.queue(queue).getWaiting(0, -1);
  return jobs.map((j) => j.id as string);
}

describe("Engine.enqueue", () => {
  it("adds a run of more tasks than one chunk holds, each job exactly once", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const n = 2 * ENQUEUE_CHUNK + 500;
    await engine.workflows.submit(parallel("wide", n, "wide"));
    const calls: string[][] = [];
    const add = engine.queues.add.bind(engine.queues);
    engine.queues.add = (specs) => {
      calls.push(specs.map((s) => s.taskId));
      return add(specs);
    };
    const { run, created } = await engine.runs.trigger("wide", 0, null, "");
    expect(created).toBe(true);
    // In order, one chunk after the other.
    expect(calls.map((c) => c.length)).toEqual([ENQUEUE_CHUNK, ENQUEUE_CHUNK, 500]);
    expect(calls.flat()).toEqual(Array.from({ length: n }, (_, i) => `t${i}`));
    const ids = await waitingJobIds(engine, "wide");
    expect(ids).toHaveLength(n);
    expect(new Set(ids)).toEqual(new Set(Array.from({ length: n }, (_, i) => jobIdOf(run.id, `t${i}`))));

    // A repeated step (e.g. the reconciler after a crash) adds nothing twice.
    const loaded = await engine.workflows.get("wide", 0);
    await engine.enqueue(run.id, loaded, loaded.compiled.roots);
    expect(await waitingJobIds(engine, "wide")).toHaveLength(n);
  });

  it("adds a lone task with the same job as one added in bulk", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    await engine.workflows.submit(parallel("one", 1, "same"));
    await engine.workflows.submit(parallel("two", 2, "same"));
    const one = (await engine.runs.trigger("one", 0, null, "")).run.id;
    const two = (await engine.runs.trigger("two", 0, null, "")).run.id;
    const jobs = await engine.queues.queue("same").getWaiting(0, -1);
    const byId = new Map(jobs.map((j) => [j.id, j]));
    const lone = byId.get(jobIdOf(one, "t0"));
    const bulk = byId.get(jobIdOf(two, "t0"));
    expect(jobs).toHaveLength(3);
    expect(lone?.name).toBe("h");
    expect(lone?.data).toEqual({ r: one, t: "t0", w: "one", v: 1 });
    expect(bulk?.data).toEqual({ r: two, t: "t0", w: "two", v: 1 });
    expect(lone?.opts).toEqual({ ...bulk?.opts, jobId: jobIdOf(one, "t0") });
    expect(lone?.opts.attempts).toBe(3);
  });
});

describe("Trigger", () => {
  it("starts the version another replica submitted last", async () => {
    const prefix = `test-${randomUUID()}`;
    const [a, b] = [await openEngine(prefix), await openEngine(prefix)];
    await a.workflows.submit(definition("flow", [{ id: "one", handler: "h", queue: "v" }]));
    const first = await a.runs.trigger("flow", 0, null, "");
    expect(first.run.workflowVersion).toBe(1);

    const v2 = await b.workflows.submit(
      definition("flow", [
        { id: "one", handler: "h", queue: "v" },
        { id: "two", handler: "h", queue: "v" },
      ]),
    );
    expect(v2.workflow.version).toBe(2);
    const second = await a.runs.trigger("flow", 0, null, "");
    expect(second.run.workflowVersion).toBe(2);
    expect((await a.runs.get(second.run.id)).tasks.map((t) => t.taskId)).toEqual(["one", "two"]);
    expect((await a.runs.get(first.run.id)).tasks.map((t) => t.taskId)).toEqual(["one"]);
  });
});
