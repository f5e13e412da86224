/**
 * The SDK's result() and watch() on one WatchRuns stream per client, against real weftd processes and
 * Redis: thousands of callers over one stream, every event once across a weftd restart, and the
 * per-run WatchRun path when the shared stream is off or weftd lacks it.
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { freePort } from "@weft/daemon";
import {
  createWeftClient,
  EventType,
  type ReconnectInfo,
  RunNotFoundError,
  RunStatus,
  type WeftClient,
  workflow,
} from "@weft/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type RedisServer,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
  waitFor,
  within,
} from "./support/index.js";
import { value, type WeftClients, weftClients } from "./support/weft.js";
import { spawnWorker } from "./support/worker-process.js";

let redis: RedisServer;

beforeAll(async () => {
  redis = await startTestRedis();
});

afterAll(async () => {
  await redis?.close();
});

/** Counts the calls a client makes, by method name. */
function callCounter(): { counts: Map<string, number>; interceptor: Interceptor } {
  const counts = new Map<string, number>();
  return {
    counts,
    interceptor: (next) => (req) => {
      counts.set(req.method.name, (counts.get(req.method.name) ?? 0) + 1);
      return next(req);
    },
  };
}

/** Works `n` tasks of `queue` through the worker API, each task's output its id. */
async function work(c: WeftClients, queue: string, n: number): Promise<void> {
  for (let done = 0; done < n; ) {
    const res = await c.workers.pollTask({ queue, workerId: "w", maxTasks: 256, wait: { seconds: 10n } });
    const batch = [res.assignment, ...res.moreAssignments].filter((t) => t !== undefined);
    if (batch.length === 0) throw new Error(`no task of "${queue}" within 10 s after ${done} of ${n}`);
    await c.workers.completeTasks({
      completions: batch.map((t) => ({ leaseId: t.leaseId, output: value(t.taskId) })),
    });
    done += batch.length;
  }
}

/** Fails unless no run of these workflows is left RUNNING (the liveness check of fault tests). */
async function noRunLeftRunning(client: WeftClient, workflows: string[]): Promise<void> {
  for (const name of workflows) {
    const running: string[] = [];
    for await (const run of client.listRuns({ workflow: name, statuses: [RunStatus.RUNNING] }))
      running.push(run.id);
    expect(running, `runs of ${name} left RUNNING`).toEqual([]);
  }
}

describe("result() and watch() on one WatchRuns stream", () => {
  let weftd: WeftdProcess;
  beforeAll(async () => {
    weftd = await spawnWeftd({ redisUrl: redis.url });
  });
  afterAll(async () => {
    await weftd?.stop();
  });

  it("serves 2,000 callers awaiting results over one stream, with no GetRun or WatchRun", async () => {
    const { counts, interceptor } = callCounter();
    const client = createWeftClient({ address: weftd.address, interceptors: [interceptor] });
    const queue = `many-${randomUUID().slice(0, 8)}`;
    await client.submitWorkflow(
      workflow(queue)
        .task("a", { queue })
        .task("b", { queue, dependsOn: ["a"] }),
    );
    const runs = [
      ...(await client.triggerMany(Array.from({ length: 1000 }, (_, i) => ({ workflow: queue, input: i })))),
      ...(await client.triggerMany(Array.from({ length: 1000 }, (_, i) => ({ workflow: queue, input: i })))),
    ];
    const results = runs.map(({ run }) => client.result(run.id));
    await work(weftClients(weftd.address), queue, 4000);
    const outputs = await within(Promise.all(results), 30_000, "2,000 results");
    expect(outputs).toEqual(runs.map(() => ({ b: "b" })));
    expect(counts.get("WatchRuns")).toBe(1);
    expect(counts.get("WatchRun")).toBeUndefined();
    expect(counts.get("GetRun")).toBeUndefined();
    client.close();
  });

  it("resolves runs awaited one after the other, each finishing as (or before) its wait begins", async () => {
    // A run that finishes while weftd reads its status for a new follow, with its workflow's channel
    // already subscribed, is announced before it is followed: the follow must still see it.
    const client = createWeftClient({ address: weftd.address });
    const queue = `serial-${randomUUID().slice(0, 8)}`;
    await client.submitWorkflow(workflow(queue).task("a", { queue, handler: "echo" }));
    const worker = await spawnWorker({ address: weftd.address, queue, concurrency: 4 });
    try {
      for (let i = 0; i < 300; i++) {
        const { run } = await client.trigger(queue, i);
        expect(await within(client.result(run.id), 10_000, `the result of run ${i}`)).toEqual({
          a: { task: "a", input: null, parents: {} },
        });
      }
    } finally {
      await worker.stop();
      client.close();
    }
  });

  it("carries watch() and result() past a RUN_FINISHED when the run was resumed, on the shared stream", async () => {
    const { counts, interceptor } = callCounter();
    const client = createWeftClient({ address: weftd.address, interceptors: [interceptor] });
    const c = weftClients(weftd.address);
    const queue = `resumed-${randomUUID().slice(0, 8)}`;
    await client.submitWorkflow(
      workflow(queue)
        .task("a", { queue, handler: "h" })
        .task("b", { queue, handler: "h", dependsOn: ["a"] }),
    );
    const { run } = await client.trigger(queue, null);
    await work(c, queue, 1);
    const b = await c.workers.pollTask({ queue, workerId: "w", wait: { seconds: 10n } });
    await c.workers.failTask({
      leaseId: b.assignment?.leaseId ?? "",
      error: { type: "Broken", message: "b broke" },
      retryable: false,
    });
    await waitFor(async () => (await client.getRun(run.id)).status === RunStatus.FAILED, {
      message: "the run to fail",
    });
    // Resumed: b is queued again, and nothing works it until the watch has read past the first end.
    await c.failures.resumeRun({ runId: run.id });
    const types: string[] = [];
    const watching = (async () => {
      for await (const e of client.watch(run.id))
        types.push(`${EventType[e.type]} ${RunStatus[e.runStatus]}`);
    })();
    const result = client.result(run.id);
    await waitFor(() => types.some((t) => t.startsWith("RUN_RESUMED")), {
      message: "the watch to pass RUN_RESUMED",
    });
    await work(c, queue, 1);
    await within(watching, 10_000, "the watch to end");
    expect(types.slice(types.indexOf("RUN_FINISHED FAILED"))).toEqual([
      "RUN_FINISHED FAILED",
      "RUN_RESUMED RUNNING",
      "TASK_QUEUED RUNNING",
      "TASK_STARTED RUNNING",
      "TASK_COMPLETED RUNNING",
      "RUN_FINISHED SUCCEEDED",
    ]);
    expect(await within(result, 10_000, "the result")).toEqual({ b: "b" });
    expect(counts.get("WatchRun") ?? 0).toBe(0);
    client.close();
  });

  it("gives several watchers of one run, from different sequences, each its events once and in order", async () => {
    const { counts, interceptor } = callCounter();
    const client = createWeftClient({ address: weftd.address, interceptors: [interceptor] });
    const queue = `watchers-${randomUUID().slice(0, 8)}`;
    await client.submitWorkflow(
      workflow(queue)
        .task("a", { queue })
        .task("b", { queue, dependsOn: ["a"] }),
    );
    const { run } = await client.trigger(queue);
    const collect = async (after: number) => {
      const seen: number[] = [];
      for await (const e of client.watch(run.id, { afterSequence: after })) seen.push(Number(e.sequence));
      return seen;
    };
    const fromStart = collect(0);
    const waiting = client.result(run.id);
    const raw = weftClients(weftd.address);
    await work(raw, queue, 1);
    // A watcher that joins later, from an earlier sequence than the stream has reached.
    const late = collect(2);
    await work(raw, queue, 1);
    expect(await within(fromStart, 10_000, "the first watcher")).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(await within(late, 10_000, "the late watcher")).toEqual([3, 4, 5, 6, 7, 8]);
    expect(await waiting).toEqual({ b: "b" });
    // Resumed at the run's end: nothing, at once.
    expect(await within(collect(8), 10_000, "a watch resumed at the end")).toEqual([]);
    expect(counts.get("WatchRun")).toBeUndefined();
    client.close();
  });

  it("rejects result() and watch() of a run that does not exist with RunNotFoundError", async () => {
    const client = createWeftClient({ address: weftd.address });
    const missing = randomUUID();
    const err = await client.result(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunNotFoundError);
    expect(err).toMatchObject({ runId: missing, code: Code.NotFound, message: `run "${missing}" not found` });
    const watched = await (async () => {
      for await (const _ of client.watch(missing)) return "an event";
    })().catch((e: unknown) => e);
    expect(watched).toBeInstanceOf(RunNotFoundError);
    // A malformed id gets weftd's own INVALID_ARGUMENT, as before.
    await expect(client.result("not-a-run")).rejects.toMatchObject({ code: Code.InvalidArgument });
    client.close();
  });

  it("stops waiting when the caller's signal aborts, without ending the others' waits", async () => {
    const client = createWeftClient({ address: weftd.address });
    const queue = `abort-${randomUUID().slice(0, 8)}`;
    await client.submitWorkflow(workflow(queue).task("a", { queue }));
    const [first, second] = await client.triggerMany([{ workflow: queue }, { workflow: queue }]);
    const abort = new AbortController();
    const aborted = client.result(first?.run.id ?? "", { signal: abort.signal });
    const kept = client.result(second?.run.id ?? "");
    abort.abort(new Error("caller gave up"));
    await expect(aborted).rejects.toThrow("caller gave up");
    await work(weftClients(weftd.address), queue, 2);
    expect(await within(kept, 10_000, "the other result")).toEqual({ a: "a" });
    client.close();
  });

  it("uses a WatchRun stream per wait with sharedWatch: false, and when weftd answers UNIMPLEMENTED", async () => {
    const off = callCounter();
    const offClient = createWeftClient({
      address: weftd.address,
      sharedWatch: false,
      interceptors: [off.interceptor],
    });
    // weftd before WatchRuns, as the client sees it.
    const old = callCounter();
    const refuse: Interceptor = (next) => (req) => {
      if (req.method.name === "WatchRuns")
        throw new ConnectError("WatchRuns is not implemented", Code.Unimplemented);
      return next(req);
    };
    const oldClient = createWeftClient({ address: weftd.address, interceptors: [old.interceptor, refuse] });
    const queue = `per-run-${randomUUID().slice(0, 8)}`;
    await offClient.submitWorkflow(workflow(queue).task("a", { queue }));
    const [a, b] = await offClient.triggerMany([{ workflow: queue }, { workflow: queue }]);
    const results = [offClient.result(a?.run.id ?? ""), oldClient.result(b?.run.id ?? "")];
    const events: EventType[] = [];
    const watching = (async () => {
      for await (const e of oldClient.watch(a?.run.id ?? "")) events.push(e.type);
    })();
    await work(weftClients(weftd.address), queue, 2);
    expect(await within(Promise.all(results), 10_000, "both results")).toEqual([{ a: "a" }, { a: "a" }]);
    await within(watching, 10_000, "the watch");
    expect(events.at(-1)).toBe(EventType.RUN_FINISHED);
    expect(off.counts.get("WatchRuns")).toBeUndefined();
    expect(off.counts.get("WatchRun")).toBe(1);
    expect(old.counts.get("WatchRuns")).toBe(1);
    expect(old.counts.get("WatchRun")).toBe(2);
    offClient.close();
    oldClient.close();
  });
});

describe("the shared stream across a weftd restart", () => {
  it("reopens with each run's cursor: every watcher gets every event once, every result resolves", async () => {
    const port = await freePort();
    const prefix = `test-${randomUUID()}`;
    const start = () =>
      spawnWeftd({
        redisUrl: redis.url,
        prefix,
        args: ["--addr", `127.0.0.1:${port}`, "--shutdown-grace", "1s"],
      });
    let weftd = await start();
    const { counts, interceptor } = callCounter();
    const client = createWeftClient({
      address: weftd.address,
      reconnect: { initialDelayMs: 50, maxDelayMs: 500, maxAttempts: 100 },
      interceptors: [interceptor],
    });
    const queue = `restart-${randomUUID().slice(0, 8)}`;
    await client.submitWorkflow(
      workflow(queue)
        .task("a", { queue })
        .task("b", { queue, dependsOn: ["a"] })
        .task("c", { queue, dependsOn: ["b"] }),
    );
    const runs = (
      await client.triggerMany(Array.from({ length: 50 }, (_, i) => ({ workflow: queue, input: i })))
    ).map((r) => r.run.id);
    const reconnects: ReconnectInfo[] = [];
    const seen = new Map<string, number[]>(runs.map((id) => [id, []]));
    const watches = runs.map(async (id) => {
      for await (const e of client.watch(id, { onReconnect: (info) => reconnects.push(info) })) {
        seen.get(id)?.push(Number(e.sequence));
      }
    });
    const results = runs.map((id) => client.result(id));
    let raw = weftClients(weftd.address);
    await work(raw, queue, 50);
    await waitFor(() => [...seen.values()].every((s) => s.length >= 5), {
      message: "every watcher to see its run's a completed and b queued",
    });

    await weftd.kill();
    await waitFor(() => reconnects.length >= 1, { message: "the watches to notice the dropped stream" });
    weftd = await start();
    raw = weftClients(weftd.address);
    await work(raw, queue, 100);
    await within(Promise.all(watches), 20_000, "every watch to end");
    const outputs = await within(Promise.all(results), 20_000, "every result");

    expect(outputs).toEqual(runs.map(() => ({ c: "c" })));
    for (const [id, sequences] of seen) {
      expect(sequences, `events of run ${id}`).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    }
    expect(reconnects[0]?.afterSequence).toBe(5n);
    // One stream before the restart, and one (or a few, while weftd came back) after it.
    expect(counts.get("WatchRuns")).toBeGreaterThanOrEqual(2);
    expect(counts.get("WatchRun")).toBeUndefined();
    await noRunLeftRunning(client, [queue]);
    client.close();
    await weftd.stop();
  });
});
