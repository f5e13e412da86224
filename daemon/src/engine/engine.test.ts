import { randomUUID } from "node:crypto";
import { create, type MessageInitShape, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { EventType, RunStatus, TaskStatus } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { type TaskDefinitionSchema, WorkflowDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { defaultPolicy } from "../policy.js";
import { type RedisServer, startRedisServer } from "../redis/private-redis.js";
import { QUEUE_EVENTS_KEPT } from "./dispatch/index.js";
import { Engine, type EngineOptions } from "./engine.js";
import { ENQUEUE_CHUNK } from "./runs/index.js";
import { formatLeaseId, jobIdOf, parseLeaseId } from "./shared/index.js";

/** A START budget that never refuses (the steps are tested here, not the answer limit). */
const UNBOUNDED = { limit: 1e15, group: "g", left: 1e15, base: 0 };

type TaskInit = MessageInitShape<typeof TaskDefinitionSchema>;

let redisServer: RedisServer;
let redis: Redis;
const engines: Engine[] = [];

beforeAll(async () => {
  redisServer = await startRedisServer({ persistence: "none" });
  redis = new Redis(redisServer.url);
});

afterEach(async () => {
  // The engines share one ioredis client: spies on its script commands must not outlive a test.
  vi.restoreAllMocks();
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
async function openEngine(prefix: string, options: Partial<EngineOptions> = {}): Promise<Engine> {
  const engine = await Engine.open(
    redisServer.url,
    redis,
    { ...OPTIONS, ...options, prefix },
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
  it("writes a large run's task records, counters and first events in order, past one command's share", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `large-${randomUUID().slice(0, 8)}`;
    // 1,200 roots, each with a child: more records, counters and events than one command carries.
    const roots = Array.from({ length: 1200 }, (_, i) => ({ id: `r${i}`, handler: "h", queue }));
    const children = roots.map((r, i) => ({ id: `c${i}`, handler: "h", queue, dependsOn: [r.id] }));
    await engine.workflows.submit(definition("large", [...roots, ...children]));
    const { run } = await engine.runs.trigger("large", 0, null, "");
    const k = engine.keys.run(run.id);
    const events = (await redis.lrange(k.events, 0, -1)).map((e) => JSON.parse(e) as unknown[]);
    expect(events.map((e) => e[0])).toEqual(Array.from({ length: 1201 }, (_, i) => i + 1));
    expect(events[0]?.slice(2)).toEqual(["ty", EventType.RUN_STARTED, "rs", "R"]);
    expect(events.slice(1).map((e) => e.slice(2))).toEqual(
      roots.map((r) => ["ty", EventType.TASK_QUEUED, "tk", r.id, "a", 0, "rs", "R"]),
    );
    expect(await redis.hget(k.run, "seq")).toBe("1201");
    // One hash: the roots' records by id, the children's parent counters under d:<id>.
    const tasks = await redis.hgetall(k.tasks);
    expect(Object.keys(tasks).sort()).toEqual(
      [...roots.map((r) => r.id), ...children.map((c) => `d:${c.id}`)].sort(),
    );
    expect(JSON.parse(tasks.r1199 ?? "")).toMatchObject({ s: "Q", a: 0 });
    expect(Object.fromEntries(Object.entries(tasks).filter(([f]) => f.startsWith("d:")))).toEqual(
      Object.fromEntries(children.map((c) => [`d:${c.id}`, "1"])),
    );
    // A watcher reads the same events.
    const read = await engine.hub.read(run.id, 1199, 10);
    expect(read.map((e) => [e.sequence, e.result.value.event?.taskId])).toEqual([
      [1200, "r1198"],
      [1201, "r1199"],
    ]);
  });

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

describe("the START step", () => {
  it("starts the tasks of one run asked for in the same tick in one script call, answering each", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `start-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel("three", 3, queue));
    const runId = (await engine.runs.trigger("three", 0, { n: 1 }, "")).run.id;
    const calls = vi.spyOn(
      engine.redis as unknown as { weftStart: (...args: unknown[]) => unknown },
      "weftStart",
    );
    const now = Date.now();
    const replies = await Promise.all([
      engine.steps.start(runId, "t0", "n0", "lock0", "w", now, 30_000, 0, [], UNBOUNDED),
      engine.steps.start(runId, "unknown", "n1", "lock1", "w", now, 30_000, 0, [], UNBOUNDED),
      engine.steps.start(runId, "t2", "n2|alice", "lock2", "w", now + 1, 30_000, 5_000, [], UNBOUNDED),
    ]);
    expect(calls).toHaveBeenCalledTimes(1);
    expect(replies).toEqual([
      ["ok", 1, '{"n":1}', now + 30_000],
      ["gone"],
      ["ok", 1, '{"n":1}', now + 5_001],
    ]);
    // Started already: the lease it holds was lost if the task is delivered again.
    expect(await engine.steps.start(runId, "t0", "n3", "lock3", "w", now, 30_000, 0, [], UNBOUNDED)).toEqual([
      "lost",
      1,
      "n0",
      0,
    ]);
    const started = (await engine.runs.get(runId)).tasks.filter((t) => t.workerId === "w");
    expect(started.map((t) => t.taskId)).toEqual(["t0", "t2"]);
  });
});

describe("a job the stalled checker put back", () => {
  it("ends the lease its task's record holds only when that lease's fetch no longer holds the job's lock", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `stalled-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel("one", 1, queue));
    const runId = (await engine.runs.trigger("one", 0, null, "")).run.id;
    const [leased] = await engine.leases.poll(
      { queue, workerId: "w", handlers: [], waitMs: 1000, maxTasks: 1 },
      new AbortController().signal,
    );
    const jobId = jobIdOf(runId, "t0");
    const status = async () => TaskStatus[(await engine.runs.get(runId)).tasks[0]?.status ?? 0];
    // The job was put back and fetched again, and its new lease started before the stalled event was
    // handled: the record is the new lease's, whose fetch holds the lock. Nothing ends.
    await engine.leases.onStalled(queue, jobId);
    expect(await status()).toBe("RUNNING");
    // The lease's lock is gone (its replica died): the lease is lost, and the task is retried.
    await redis.del(engine.keys.jobLock(queue, jobId));
    await engine.leases.onStalled(queue, jobId);
    expect(await status()).toBe("RETRYING");
    const late = await engine.leases.complete(leased?.leaseId ?? "", 1).catch((err: Error) => err.message);
    expect(late).toMatch(/is no longer valid: the lease expired/);
  });
});

describe("steps of several runs", () => {
  it("start tasks of different runs asked for in the same tick in one script call, each with its run's input", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `multi-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel("two", 2, queue));
    const a = (await engine.runs.trigger("two", 0, "A", "")).run.id;
    const b = (await engine.runs.trigger("two", 0, "B", "")).run.id;
    const calls = vi.spyOn(
      engine.redis as unknown as { weftStart: (...args: unknown[]) => unknown },
      "weftStart",
    );
    const now = Date.now();
    const replies = await Promise.all([
      engine.steps.start(a, "t0", "na", "lock-a", "w", now, 30_000, 0, [], UNBOUNDED),
      engine.steps.start(b, "t1", "nb", "lock-b", "w", now, 30_000, 0, [], UNBOUNDED),
      engine.steps.start(b, "missing", "nm", "lock-m", "w", now, 30_000, 0, [], UNBOUNDED),
      engine.steps.start(a, "t1", "na2", "lock-a2", "w", now, 10_000, 0, [], UNBOUNDED),
    ]);
    expect(calls).toHaveBeenCalledTimes(1);
    expect(replies).toEqual([
      ["ok", 1, '"A"', now + 30_000],
      ["ok", 1, '"B"', now + 30_000],
      ["gone"],
      ["ok", 1, '"A"', now + 10_000],
    ]);
    const running = async (runId: string) =>
      (await engine.runs.get(runId)).tasks
        .filter((t) => t.status === TaskStatus.RUNNING)
        .map((t) => t.taskId);
    expect(await running(a)).toEqual(["t0", "t1"]);
    expect(await running(b)).toEqual(["t1"]);
  });

  it("complete tasks of different runs in one script call, finishing each run with its own output", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `multi-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel("one", 1, queue));
    const runIds = [
      (await engine.runs.trigger("one", 0, null, "")).run.id,
      (await engine.runs.trigger("one", 0, null, "")).run.id,
    ];
    const leased = await engine.leases.poll(
      { queue, workerId: "w", handlers: [], waitMs: 1000, maxTasks: 2 },
      new AbortController().signal,
    );
    expect(leased.map((l) => l.runId).sort()).toEqual([...runIds].sort());
    const calls = vi.spyOn(
      engine.redis as unknown as { weftComplete: (...args: unknown[]) => unknown },
      "weftComplete",
    );
    await Promise.all(leased.map((l) => engine.leases.complete(l.leaseId, `out of ${l.runId}`)));
    expect(calls).toHaveBeenCalledTimes(1);
    for (const runId of runIds) {
      const run = await engine.runs.get(runId);
      expect(RunStatus[run.status]).toBe("SUCCEEDED");
      expect(run.output && toJson(ValueSchema, run.output)).toEqual({ t0: `out of ${runId}` });
    }
  });

  it("start the runs of one BatchTrigger in one script call; a repeated idempotency key makes one run", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    await engine.workflows.submit(parallel("one", 1, `multi-${randomUUID().slice(0, 8)}`));
    const calls = vi.spyOn(
      engine.redis as unknown as { weftTrigger: (...args: unknown[]) => unknown },
      "weftTrigger",
    );
    const items = [
      { workflow: "one", version: 0, input: 1, idempotencyKey: "" },
      { workflow: "one", version: 0, input: 2, idempotencyKey: "same" },
      { workflow: "one", version: 0, input: 3, idempotencyKey: "same" },
    ];
    const started = await engine.runs.triggerMany(items, (i, field) => `requests[${i}].${field}`);
    expect(calls).toHaveBeenCalledTimes(1);
    expect(started.map((s) => s.created)).toEqual([true, true, false]);
    expect(started[2]?.run.id).toBe(started[1]?.run.id);
    expect(started[2]?.run.input && toJson(ValueSchema, started[2].run.input)).toBe(2);
    // Both runs entered the list indexes, the run of the repeated key once.
    const listed = await engine.runs.list({ workflow: "one", statuses: [], pageSize: 10, pageToken: "" });
    expect(listed.runs.map((r) => r.id).sort()).toEqual([started[0]?.run.id, started[1]?.run.id].sort());
  });
});

/** The same lease with another nonce: what a worker holding a stale lease presents. */
function otherNonce(leaseId: string): string {
  const lease = parseLeaseId(leaseId);
  if (lease === undefined) throw new Error(`not a lease id: ${leaseId}`);
  return formatLeaseId({
    ...lease,
    nonce:
      lease.nonce === "a".repeat(lease.nonce.length)
        ? "b".repeat(lease.nonce.length)
        : "a".repeat(lease.nonce.length),
  });
}

describe("run events", () => {
  it("are kept in a list, the event of sequence s at index s - 1, and read back field for field", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `events-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel("one", 1, queue));
    const { run } = await engine.runs.trigger("one", 0, null, "");
    const [leased] = await engine.leases.poll(
      { queue, workerId: "worker-7", handlers: [], waitMs: 1000, maxTasks: 1 },
      new AbortController().signal,
    );
    // Text that JSON escapes, and a string of digits, which must come back as written.
    const output = { s: 'quote " backslash \\ slash / é \u0001', n: 12, tag: "0042" };
    await engine.leases.complete(leased?.leaseId ?? "", output);
    const key = engine.keys.run(run.id).events;
    expect(await redis.type(key)).toBe("list");
    const entries = await redis.lrange(key, 0, -1);
    expect(entries.map((e) => (JSON.parse(e) as unknown[])[0])).toEqual([1, 2, 3, 4, 5]);
    const events = await engine.hub.read(run.id, 0, 10);
    expect(events.map((e) => EventType[e.result.value.event?.type ?? 0])).toEqual([
      "RUN_STARTED",
      "TASK_QUEUED",
      "TASK_STARTED",
      "TASK_COMPLETED",
      "RUN_FINISHED",
    ]);
    const [, , started, succeeded, finished] = events.map((e) => e.result.value.event);
    expect(started?.workerId).toBe("worker-7");
    expect(started?.attempt).toBe(1);
    expect(succeeded?.output && toJson(ValueSchema, succeeded.output)).toEqual(output);
    expect(finished?.output && toJson(ValueSchema, finished.output)).toEqual({ t0: output });
    expect(Number(finished?.time?.seconds)).toBeGreaterThan(1.7e9);
    // Reads from any sequence, up to a bound, take the same entries.
    expect((await engine.hub.read(run.id, 2, 2)).map((e) => e.sequence)).toEqual([3, 4]);
    expect((await engine.hub.read(run.id, 1, 10, 3)).map((e) => e.sequence)).toEqual([2, 3]);
    expect(await engine.hub.read(run.id, 5, 10)).toEqual([]);
    expect(await engine.hub.read(run.id, Number(2n ** 63n - 1n), 10)).toEqual([]);
    // A one-task run's five events take well under the 4 KiB a new stream would preallocate.
    expect(Number(await redis.memory("USAGE", key))).toBeLessThan(1024);
  });
});

describe("a run of more than 1,000 tasks", () => {
  it("is checked and cancelled a page of records at a time, its outputs left as they are", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `big-${randomUUID().slice(0, 8)}`;
    const roots = Array.from({ length: 1200 }, (_, i) => ({ id: `r${i}`, handler: "h", queue }));
    const children = roots.map((r, i) => ({ id: `c${i}`, handler: "h", queue, dependsOn: [r.id] }));
    await engine.workflows.submit(definition("big", [...roots, ...children]));
    const { run } = await engine.runs.trigger("big", 0, null, "");
    const leased = await engine.leases.poll(
      { queue, workerId: "w", handlers: [], waitMs: 1000, maxTasks: 3 },
      new AbortController().signal,
    );
    expect(leased.map((l) => l.taskId)).toEqual(["r0", "r1", "r2"]);
    const large = { text: "x".repeat(100_000) };
    await engine.leases.complete(leased[0]?.leaseId ?? "", large);
    await engine.leases.complete(leased[1]?.leaseId ?? "", 1);

    // A crash lost 300 queued roots' jobs. The records fill two pages of the reconciler's reads (in
    // the hash's own order), and it adds every lost job again.
    const lost = roots.slice(900).map((r) => r.id);
    for (const id of lost) await engine.queues.remove(queue, jobIdOf(run.id, id));
    await redis.zadd(engine.keys.dirtyRuns(0), Date.now() - 120_000, run.id);
    expect(await engine.reconciler.pass()).toBe(1);
    for (const id of lost) expect(await engine.queues.exists(queue, jobIdOf(run.id, id)), id).toBe(true);

    await engine.runs.cancel(run.id, "enough");
    const view = await engine.runs.get(run.id);
    const byStatus = new Map<string, string[]>();
    for (const t of view.tasks) {
      const status = TaskStatus[t.status];
      byStatus.set(status, [...(byStatus.get(status) ?? []), t.taskId]);
    }
    expect(byStatus.get("SUCCEEDED")).toEqual(["r0", "r1"]);
    // The running one, the other 1,197 roots, the two children made ready, and 1,198 never ready.
    expect(byStatus.get("CANCELLED")?.length).toBe(2398);
    expect([...byStatus.keys()].sort()).toEqual(["CANCELLED", "SUCCEEDED"]);
    const r0 = view.tasks.find((t) => t.taskId === "r0");
    expect(r0?.output && toJson(ValueSchema, r0.output)).toEqual(large);
  });
});

describe("the recently-touched set", () => {
  it("holds a run while it runs and lets it go when a step finishes it", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `dirty-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel("one", 1, queue));
    const [a, b] = [
      (await engine.runs.trigger("one", 0, null, "")).run.id,
      (await engine.runs.trigger("one", 0, null, "")).run.id,
    ];
    const dirty = engine.keys.dirtyRuns(0);
    expect(await redis.zcard(dirty)).toBe(2);
    const [leased] = await engine.leases.poll(
      { queue, workerId: "w", handlers: [], waitMs: 1000, maxTasks: 1 },
      new AbortController().signal,
    );
    await engine.leases.complete(leased?.leaseId ?? "", 1);
    await engine.runs.cancel(leased?.runId === a ? b : a, "not needed");
    // The ZREM goes out in the tick after the step's reply.
    await vi.waitFor(
      async () => {
        expect(await redis.zrange(dirty, 0, -1)).toEqual([]);
      },
      { timeout: 5_000, interval: 10 },
    );
  });

  it("takes a run again for a completion that leaves a follow-up, not for a childless one", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `mark-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel("pair", 2, queue));
    await engine.workflows.submit(
      definition("chain", [
        { id: "a", handler: "h", queue },
        { id: "b", handler: "h", queue, dependsOn: ["a"] },
      ]),
    );
    const dirty = engine.keys.dirtyRuns(0);
    const completeOne = async (runId: string) => {
      const [leased] = await engine.leases.poll(
        { queue, workerId: "w", handlers: [], waitMs: 1000, maxTasks: 1 },
        new AbortController().signal,
      );
      expect(leased?.runId).toBe(runId);
      await engine.leases.complete(leased?.leaseId ?? "", 1);
    };
    // Each run is forgotten after its trigger, as a reconciliation pass forgets a quiet run.
    const pair = (await engine.runs.trigger("pair", 0, null, "")).run.id;
    expect(await redis.zscore(dirty, pair)).not.toBeNull();
    await redis.zrem(dirty, pair);
    await completeOne(pair);
    expect(await redis.zscore(dirty, pair)).toBeNull();
    await completeOne(pair);
    expect((await engine.runs.summary(pair)).status).toBe(RunStatus.SUCCEEDED);
    expect(await redis.zscore(dirty, pair)).toBeNull();

    const chain = (await engine.runs.trigger("chain", 0, null, "")).run.id;
    await redis.zrem(dirty, chain);
    await completeOne(chain);
    // a's completion queued b: had the daemon died before adding b's job, the reconciler must see it.
    expect(await redis.zscore(dirty, chain)).not.toBeNull();
  });

  it("is checked whole by one reconciliation pass, a page at a time, re-adding a job a crash lost", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `recon-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel("one", 1, queue));
    const results = await engine.runs.triggerMany(
      Array.from({ length: 450 }, () => ({ workflow: "one", version: 0, input: null, idempotencyKey: "" })),
      (_, field) => field,
    );
    const runIds = results.map((r) => r.run.id);
    const dirty = engine.keys.dirtyRuns(0);
    // Quiet for longer than reconcileAfterMs, as if their steps were two minutes old.
    const old = Date.now() - 120_000;
    await redis.zadd(dirty, ...runIds.flatMap((id) => [old, id]));
    const lost = runIds[321] ?? "";
    await engine.queues.remove(queue, jobIdOf(lost, "t0"));
    expect(await engine.queues.exists(queue, jobIdOf(lost, "t0"))).toBe(false);
    expect(await engine.reconciler.pass()).toBe(450);
    expect(await redis.zcard(dirty)).toBe(0);
    expect(await engine.queues.exists(queue, jobIdOf(lost, "t0"))).toBe(true);
    expect((await waitingJobIds(engine, queue)).length).toBe(450);
  });
  it("adds again the job of a task still to run whose job has ended (a step lost in a failover)", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `ended-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel("one", 1, queue));
    const runId = (await engine.runs.trigger("one", 0, null, "")).run.id;
    // The job completes in BullMQ while the run's record of it is lost: the task is still queued.
    const token = randomUUID();
    const job = await engine.queues.worker(queue).getNextJob(token, { block: false });
    expect(job?.id).toBe(jobIdOf(runId, "t0"));
    await job?.moveToCompleted(null, token, false);
    expect(await engine.queues.state(queue, jobIdOf(runId, "t0"))).toBe("completed");
    await redis.zadd(engine.keys.dirtyRuns(0), Date.now() - 120_000, runId);
    expect(await engine.reconciler.pass()).toBe(1);
    expect(await engine.queues.state(queue, jobIdOf(runId, "t0"))).toBe("waiting");
    // The task runs and its run finishes.
    const [leased] = await engine.leases.poll(
      { queue, workerId: "w", handlers: [], waitMs: 1000, maxTasks: 1 },
      new AbortController().signal,
    );
    await engine.leases.complete(leased?.leaseId ?? "", 1);
    expect((await engine.runs.summary(runId)).status).toBe(RunStatus.SUCCEEDED);
  });
});

describe("the run indexes", () => {
  it("lose the entries of runs whose retention ended, a page at a time, and keep runs still kept", async () => {
    const retention = 200;
    const engine = await openEngine(`test-${randomUUID()}`, {
      runRetentionMs: retention,
      indexPruneGraceMs: 0,
    });
    const queue = `prune-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel("one", 1, queue));
    await engine.workflows.submit(parallel("other", 1, queue));
    const trigger = async (workflow: string) => (await engine.runs.trigger(workflow, 0, null, "")).run.id;
    const running = await trigger("one");
    const finished = [await trigger("one"), await trigger("other")];
    for (const id of finished) await engine.runs.cancel(id, "done with it");
    const all = engine.keys.runIndex(undefined, 0);
    const ofOne = engine.keys.runIndex("one", 0);
    const ofOther = engine.keys.runIndex("other", 0);
    // Entries of runs that expired long ago, past two pages, with the running run's among them.
    const created = Number(await redis.zscore(all, running));
    const stale = Array.from({ length: 1_100 }, (_, i) => [created - 1_100 + i, `stale-${i}`] as const);
    await redis.zadd(all, ...stale.flat(), created - 550, running);
    await redis.zadd(ofOne, ...stale.flat(), created - 550, running);
    await vi.waitFor(
      async () => {
        expect(await redis.exists(...finished.map((id) => engine.keys.run(id).run))).toBe(0);
        expect(Date.now() - retention).toBeGreaterThan(Number(await redis.zscore(all, finished[1] ?? "")));
      },
      { timeout: 5_000, interval: 20 },
    );

    expect(await engine.reconciler.pruneIndexes()).toBe(2 * 1_100 + 4);

    expect(await redis.zrange(all, 0, -1)).toEqual([running]);
    expect(await redis.zrange(ofOne, 0, -1)).toEqual([running]);
    expect(await redis.zcard(ofOther)).toBe(0);
    expect(
      (await engine.runs.list({ workflow: "", statuses: [], pageSize: 10, pageToken: "" })).runs.map(
        (r) => r.id,
      ),
    ).toEqual([running]);
    expect(await engine.reconciler.pruneIndexes()).toBe(0);

    // A reconciliation pass prunes too, at most once a minute.
    await redis.zadd(all, created - 1, "stale-a");
    await engine.reconciler.pass();
    expect(await redis.zscore(all, "stale-a")).toBeNull();
    await redis.zadd(all, created - 1, "stale-b");
    await engine.reconciler.pass();
    expect(await redis.zscore(all, "stale-b")).not.toBeNull();
  });

  it("are pruned where the last pruning stopped when a deadline cut it short", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    for (const name of ["a", "b", "c"]) await engine.workflows.submit(parallel(name, 1, `resume-${name}`));
    const old = Date.now() - 180_000;
    const stale = (index: string, tag: string) =>
      redis.zadd(index, old, `${tag}-1`, old + 1, `${tag}-2`, old + 2, `${tag}-3`);
    await stale(engine.keys.runIndex(undefined, 0), "all");
    for (const name of ["a", "b", "c"]) await stale(engine.keys.runIndex(name, 0), name);

    // A deadline already past: the first index still gets one page, then the call stops.
    expect(await engine.reconciler.pruneIndexes(Date.now() - 1)).toBe(3);
    expect(await redis.zcard(engine.keys.runIndex("a", 0))).toBe(3);
    // The next call goes on with the workflows' indexes, and the one after starts over.
    expect(await engine.reconciler.pruneIndexes()).toBe(9);
    for (const name of ["a", "b", "c"]) expect(await redis.zcard(engine.keys.runIndex(name, 0))).toBe(0);
    await stale(engine.keys.runIndex(undefined, 0), "again");
    expect(await engine.reconciler.pruneIndexes()).toBe(3);
    expect(await redis.zcard(engine.keys.runIndex(undefined, 0))).toBe(0);
  });

  it("keep an entry without its run for a minute past the retention: its run may be on its way", async () => {
    const engine = await openEngine(`test-${randomUUID()}`, { runRetentionMs: 200 });
    const all = engine.keys.runIndex(undefined, 0);
    const now = Date.now();
    // Past the retention but within its grace (a trigger step Redis answered late, a replica's clock
    // behind), and past both.
    await redis.zadd(all, now - 5_000, "within-grace", now - 200 - 61_000, "past-grace");
    expect(await engine.reconciler.pruneIndexes()).toBe(1);
    expect(await redis.zrange(all, 0, -1)).toEqual(["within-grace"]);
  });

  it("keep the entries of runs created within the retention, whatever their state", async () => {
    const engine = await openEngine(`test-${randomUUID()}`, { runRetentionMs: 60_000 });
    await engine.workflows.submit(parallel("one", 1, `keep-${randomUUID().slice(0, 8)}`));
    const id = (await engine.runs.trigger("one", 0, null, "")).run.id;
    // An entry without a run, as a trigger that lost to an idempotency key may leave, but recent.
    await redis.zadd(engine.keys.runIndex(undefined, 0), Date.now(), "recent-without-run");
    expect(await engine.reconciler.pruneIndexes()).toBe(0);
    expect(await redis.zcard(engine.keys.runIndex(undefined, 0))).toBe(2);
    expect(await redis.zrange(engine.keys.runIndex("one", 0), 0, -1)).toEqual([id]);
  });
  it("keep the entry of a run being triggered that ListRuns reads before the run exists", async () => {
    const engine = await openEngine(`test-${randomUUID()}`, { runRetentionMs: 60_000 });
    await engine.workflows.submit(parallel("one", 1, `entering-${randomUUID().slice(0, 8)}`));
    const all = engine.keys.runIndex(undefined, 0);
    // An entry of a run that expired long ago (past the retention and its grace) is pruned as it is read.
    await redis.zadd(all, Date.now() - 600_000, "expired-long-ago");
    const list = async (query: { workflow?: string; scheduleId?: string }) =>
      (
        await engine.runs.list({ workflow: "", statuses: [], pageSize: 10, pageToken: "", ...query })
      ).runs.map((r) => r.id);
    // A schedule's fire: the run enters its indexes, then its trigger step creates it. A ListRuns
    // call comes in between (on a Redis Cluster the index writes are answered before the step is
    // sent; here the step waits for the call).
    const scheduleId = "every-second";
    const fireTime = Date.now() - 1000;
    const target = engine.redis as unknown as { weftTrigger: (...args: unknown[]) => Promise<unknown> };
    const step = target.weftTrigger;
    const between: string[][] = [];
    vi.spyOn(target, "weftTrigger").mockImplementationOnce(async (...args: unknown[]) => {
      between.push(await list({ scheduleId }), await list({ workflow: "one" }), await list({}));
      return step.apply(target, args);
    });
    const [started] = await engine.runs.triggerMany(
      [
        {
          workflow: "one",
          version: 0,
          input: null,
          idempotencyKey: "k",
          schedule: { id: scheduleId, fireTime },
        },
      ],
      (_, field) => field,
    );
    const runId = started?.run.id ?? "";
    expect(started?.created).toBe(true);
    expect(between).toEqual([[], [], []]);
    expect(await redis.zscore(all, "expired-long-ago")).toBeNull();
    // The run is listed by its schedule, its workflow and among all runs.
    expect(await list({ scheduleId })).toEqual([runId]);
    expect(await list({ workflow: "one" })).toEqual([runId]);
    expect(await list({})).toEqual([runId]);
  });
});

describe("task queues", () => {
  const clients = async () => ((await redis.client("LIST")) as string).trim().split("\n").length;
  const poll = (engine: Engine, queue: string) =>
    engine.leases.poll(
      { queue, workerId: "w", handlers: [], waitMs: 10, maxTasks: 1 },
      new AbortController().signal,
    );

  it("close once unused, with their Redis connection, unless workers hold their jobs; a poll opens them again", async () => {
    const engine = await openEngine(`test-${randomUUID()}`, { queueIdleMs: 0 });
    const [busy, quiet] = [`busy-${randomUUID().slice(0, 8)}`, `quiet-${randomUUID().slice(0, 8)}`];
    await engine.workflows.submit(parallel("busy", 1, busy));
    await engine.workflows.submit(parallel("quiet", 1, quiet));
    const before = await clients();
    await engine.runs.trigger("busy", 0, null, "");
    const [leased] = await poll(engine, busy);
    expect(await poll(engine, quiet)).toEqual([]);
    expect(engine.queues.workerCount).toBe(2);
    expect(await clients()).toBe(before + 2);

    await vi.waitFor(
      async () => {
        await engine.closeIdleQueues();
        expect(engine.queues.hasWorker(quiet)).toBe(false);
      },
      { timeout: 5_000, interval: 10 },
    );
    // The busy queue's job is held by a worker: its stalled-job checker stays.
    expect(engine.queues.hasWorker(busy)).toBe(true);
    await vi.waitFor(async () => expect(await clients()).toBe(before + 1), { timeout: 5_000, interval: 10 });

    const run = (await engine.runs.trigger("quiet", 0, null, "")).run.id;
    const [again] = await poll(engine, quiet);
    expect(again?.runId).toBe(run);
    await engine.leases.complete(again?.leaseId ?? "", 1);
    await engine.leases.complete(leased?.leaseId ?? "", 2);
    await vi.waitFor(
      async () => {
        await engine.closeIdleQueues();
        expect(engine.queues.workerCount).toBe(0);
      },
      { timeout: 5_000, interval: 10 },
    );
    await vi.waitFor(async () => expect(await clients()).toBe(before), { timeout: 5_000, interval: 10 });
  });

  it("keep about the last 1,000 entries of BullMQ's event stream, which Weft does not read", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `events-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel("wide", 600, queue));
    await engine.runs.trigger("wide", 0, null, "");
    for (let done = 0; done < 600; ) {
      const leased = await engine.leases.poll(
        { queue, workerId: "w", handlers: [], waitMs: 1000, maxTasks: 100 },
        new AbortController().signal,
      );
      expect(leased.length, "a poll found no task while some were queued").toBeGreaterThan(0);
      for (const task of leased) await engine.leases.complete(task.leaseId, 1);
      done += leased.length;
    }
    const events = `${engine.keys.queuePrefix(queue)}:${queue}:events`;
    expect(await redis.hget(`${engine.keys.queuePrefix(queue)}:${queue}:meta`, "opts.maxLenEvents")).toBe(
      String(QUEUE_EVENTS_KEPT),
    );
    // BullMQ trims with MAXLEN ~: whole nodes of the stream (up to 100 entries) at a time.
    const kept = await redis.xlen(events);
    expect(kept).toBeGreaterThanOrEqual(QUEUE_EVENTS_KEPT);
    expect(kept).toBeLessThanOrEqual(QUEUE_EVENTS_KEPT + 100);
  });

  it("refuse a poll of one queue past --max-open-queues with RESOURCE_EXHAUSTED naming the limit", async () => {
    const engine = await openEngine(`test-${randomUUID()}`, { maxOpenQueues: 2, queueIdleMs: 60_000 });
    const name = () => `cap-${randomUUID().slice(0, 8)}`;
    const [a, b, c] = [name(), name(), name()];
    await poll(engine, a);
    await poll(engine, b);
    const refused = await poll(engine, c).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.ResourceExhausted);
    expect((refused as ConnectError).rawMessage).toBe(
      `queue: "${c}" would be one task queue more than this replica keeps open at once (--max-open-queues 2); a queue no poll used for 60 s closes`,
    );
    expect(engine.queues.hasWorker(c)).toBe(false);
    // The queues already open still serve their polls.
    expect(await poll(engine, a)).toEqual([]);
  });
});

describe("the COMPLETE step", () => {
  it("records the completions of one run reported in the same tick in one script call, answering each", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    const queue = `complete-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel("three", 3, queue));
    const runId = (await engine.runs.trigger("three", 0, null, "")).run.id;
    const leased = await engine.leases.poll(
      { queue, workerId: "w", handlers: [], waitMs: 1000, maxTasks: 3 },
      new AbortController().signal,
    );
    expect(leased.map((a) => a.taskId).sort()).toEqual(["t0", "t1", "t2"]);
    const byTask = new Map(leased.map((a) => [a.taskId, a.leaseId]));
    const calls = vi.spyOn(
      engine.redis as unknown as { weftComplete: (...args: unknown[]) => unknown },
      "weftComplete",
    );
    const outcomes = await Promise.allSettled([
      engine.leases.complete(byTask.get("t0") as string, "zero"),
      // The lease of t1 with another nonce: stale.
      engine.leases.complete(otherNonce(byTask.get("t1") as string), "x"),
      engine.leases.complete(byTask.get("t2") as string, "two"),
    ]);
    expect(calls).toHaveBeenCalledTimes(1);
    expect(
      outcomes.map((o) => (o.status === "rejected" ? ConnectError.from(o.reason).code : o.value)),
    ).toEqual([{ cancelRequested: false }, Code.FailedPrecondition, { cancelRequested: false }]);
    const run = await engine.runs.get(runId);
    expect(
      run.tasks.map((t) => [t.taskId, TaskStatus[t.status], t.output && toJson(ValueSchema, t.output)]),
    ).toEqual([
      ["t0", "SUCCEEDED", "zero"],
      ["t1", "RUNNING", undefined],
      ["t2", "SUCCEEDED", "two"],
    ]);
  });

  it("sends at most 256 steps in one script call", async () => {
    const engine = await openEngine(`test-${randomUUID()}`);
    await engine.workflows.submit(parallel("one", 1, `cap-${randomUUID().slice(0, 8)}`));
    const runId = (await engine.runs.trigger("one", 0, null, "")).run.id;
    const calls = vi.spyOn(
      engine.redis as unknown as { weftStart: (...args: unknown[]) => unknown },
      "weftStart",
    );
    const replies = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        engine.steps.start(runId, `missing${i}`, "n", "lock", "w", Date.now(), 30_000, 0, [], UNBOUNDED),
      ),
    );
    expect(calls).toHaveBeenCalledTimes(2);
    expect(new Set(replies.map((r) => r.join()))).toEqual(new Set(["gone"]));
  });
});

describe("jobs fetched by completions", () => {
  /** An engine whose held jobs wait `heldJobWaitMs` for a poll, with a queue of `n` jobs of one run. */
  async function backlogged(n: number, heldJobWaitMs: number) {
    const engine = await Engine.open(
      redisServer.url,
      redis,
      { ...OPTIONS, prefix: `test-${randomUUID()}`, heldJobWaitMs },
      defaultPolicy(),
      pino({ level: "silent" }),
    );
    engines.push(engine);
    const queue = `held-${randomUUID().slice(0, 8)}`;
    await engine.workflows.submit(parallel(queue, n, queue));
    const runId = (await engine.runs.trigger(queue, 0, null, "")).run.id;
    // A poll for two that gets two: the queue has more jobs waiting than the replica's polls take.
    const leased = await poll(engine, queue, 2);
    expect(leased.map((a) => a.taskId)).toHaveLength(2);
    expect(engine.backloggedDispatcher(queue)).toBeDefined();
    return { engine, queue, runId, leased };
  }

  function poll(engine: Engine, queue: string, maxTasks: number) {
    return engine.leases.poll(
      { queue, workerId: "w", handlers: [], waitMs: 1000, maxTasks },
      new AbortController().signal,
    );
  }

  async function lockTtlMs(engine: Engine, queue: string, jobId: string): Promise<number> {
    return redis.pttl(engine.queues.queue(queue).toKey(`${jobId}:lock`));
  }

  async function activeJobIds(engine: Engine, queue: string): Promise<string[]> {
    return (await engine.queues.queue(queue).getActive(0, -1)).map((j) => j.id as string).sort();
  }

  it("hold the next job under a short lock, and the next poll gets it under a lease's lock", async () => {
    const { engine, queue, runId, leased } = await backlogged(4, 60_000);
    await engine.leases.complete(leased[0]!.leaseId, "done");

    // Still locked: the other leased job and the job the completion fetched.
    const active = await activeJobIds(engine, queue);
    const stillLeased = jobIdOf(runId, leased[1]!.taskId);
    expect(active).toHaveLength(2);
    const heldJob = active.find((id) => id !== stillLeased) as string;
    expect(active).toContain(stillLeased);
    const heldTtl = await lockTtlMs(engine, queue, heldJob);
    expect(heldTtl).toBeGreaterThan(0);
    expect(heldTtl).toBeLessThanOrEqual(2000);
    expect(await waitingJobIds(engine, queue)).toHaveLength(1);

    const [next, ...more] = await poll(engine, queue, 1);
    expect(more).toEqual([]);
    expect(jobIdOf(runId, next!.taskId)).toBe(heldJob);
    // The lease's lock: the default heartbeat timeout plus the grace.
    expect(await lockTtlMs(engine, queue, heldJob)).toBeGreaterThan(29_000);
    expect(await waitingJobIds(engine, queue)).toHaveLength(1);
    expect(engine.dispatchStats).toEqual({ fetchedForPolls: 2, fetchedByCompletions: 1, heldReturned: 0 });
  });

  it("put a held job back in its queue when no poll takes it in time", async () => {
    const { engine, queue, runId, leased } = await backlogged(3, 50);
    await engine.leases.complete(leased[0]!.leaseId, "done");
    const third = jobIdOf(runId, "t2");
    await vi.waitFor(
      async () => {
        expect(await waitingJobIds(engine, queue)).toEqual([third]);
      },
      { timeout: 10_000, interval: 20 },
    );
    expect(await activeJobIds(engine, queue)).toEqual([jobIdOf(runId, leased[1]!.taskId)]);
    expect(await lockTtlMs(engine, queue, third)).toBe(-2);
    expect(engine.dispatchStats).toEqual({ fetchedForPolls: 2, fetchedByCompletions: 1, heldReturned: 1 });
  });

  it("put held jobs back in their queue when the replica closes", async () => {
    const { engine, queue, runId, leased } = await backlogged(3, 60_000);
    await engine.leases.complete(leased[0]!.leaseId, "done");
    const third = jobIdOf(runId, "t2");
    expect(await activeJobIds(engine, queue)).toContain(third);
    engines.splice(engines.indexOf(engine), 1);
    await engine.close();
    expect(await redis.lrange(engine.queues.queue(queue).toKey("wait"), 0, -1)).toEqual([third]);
  });

  it("fetch nothing for a replica whose polls stopped coming", async () => {
    const { engine, queue, runId, leased } = await backlogged(3, 60_000);
    // The backlog is still there, but no poll came for a while (DEMAND_WINDOW_MS).
    await vi.waitFor(
      () => {
        expect(engine.backloggedDispatcher(queue)).toBeUndefined();
      },
      { timeout: 5_000, interval: 50 },
    );
    await engine.leases.complete(leased[0]!.leaseId, "done");
    expect(await activeJobIds(engine, queue)).toEqual([jobIdOf(runId, leased[1]!.taskId)]);
    expect(await waitingJobIds(engine, queue)).toEqual([jobIdOf(runId, "t2")]);
  });

  it("stop fetching once a completion finds the queue empty", async () => {
    const { engine, queue, runId, leased } = await backlogged(2, 60_000);
    expect(engine.backloggedDispatcher(queue)).toBeDefined();
    await engine.leases.complete(leased[0]!.leaseId, "done");
    // The completion's fetch found the queue empty: later completions fetch nothing.
    expect(engine.backloggedDispatcher(queue)).toBeUndefined();
    expect(await activeJobIds(engine, queue)).toEqual([jobIdOf(runId, leased[1]!.taskId)]);
  });
});
