import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import {
  WorkerService,
  type WorkRequestSchema,
  type WorkResponse,
} from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { createWorkerTransport, Worker } from "@weft/worker";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type RedisServer,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
  waitFor,
  within,
} from "./support/index.js";
import {
  json,
  RunStatus,
  wideRun as submitWideRun,
  type TaskAssignment,
  TaskStatus,
  task,
  value,
  type WeftClients,
  weftClients,
} from "./support/weft.js";

type WorkRequestInit = MessageInitShape<typeof WorkRequestSchema>;

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

function wideRun(n: number) {
  return submitWideRun(c, "work", n);
}

/** A Work stream driven by hand: send messages, read responses one at a time, half-close. */
function openWork(workers: WeftClients["workers"] = c.workers) {
  const queued: WorkRequestInit[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  const requests = (async function* () {
    for (;;) {
      const next = queued.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (closed) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  })();
  const responses = workers.work(requests)[Symbol.asyncIterator]();
  return {
    send(message: WorkRequestInit) {
      queued.push(message);
      wake?.();
    },
    halfClose() {
      closed = true;
      wake?.();
    },
    async next(what: string): Promise<WorkResponse> {
      const r = await within(responses.next(), 10_000, what);
      if (r.done === true) throw new Error(`the stream ended before ${what}`);
      return r.value;
    },
    /** Resolves once the stream ends; rejects with its error. */
    async end(): Promise<void> {
      for (;;) {
        const r = await within(responses.next(), 10_000, "the end of the stream");
        if (r.done === true) return;
      }
    },
  };
}

async function streamError(work: ReturnType<typeof openWork>): Promise<ConnectError> {
  try {
    await work.end();
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the stream ended without an error");
}

describe("Work stream", () => {
  it("sends one assignment per credit, and more as credits come", async () => {
    const { queue } = await wideRun(3);
    const work = openWork();
    work.send({ queue, workerId: "w", credits: 2 });
    const first = await work.next("the first assignments");
    const got = [...first.assignments];
    while (got.length < 2) got.push(...(await work.next("the second assignment")).assignments);
    expect(got).toHaveLength(2);
    work.send({ credits: 1 });
    const third = await work.next("the third assignment");
    expect(third.assignments).toHaveLength(1);
    expect(new Set([...got, ...third.assignments].map((a) => a.taskId))).toEqual(new Set(["t0", "t1", "t2"]));
    work.halfClose();
    await work.end();
  });

  it("records outputs and answers each, an unknown lease with its own code, then ends after a half-close", async () => {
    const { queue, runId } = await wideRun(1);
    const work = openWork();
    work.send({ queue, workerId: "w", credits: 1 });
    const [assignment] = (await work.next("the assignment")).assignments;
    if (assignment === undefined) throw new Error("no assignment");
    work.send({
      completions: [
        { leaseId: assignment.leaseId, output: value({ done: true }) },
        { leaseId: "no-such-lease", output: value(null) },
      ],
    });
    const answer = await work.next("the answers");
    expect(answer.results.map((r) => [r.leaseId, r.code])).toEqual([
      [assignment.leaseId, 0],
      ["no-such-lease", Code.InvalidArgument],
    ]);
    expect(answer.results[1]?.message).toMatch(/^completions\[1\]\.lease_id/);
    work.halfClose();
    await work.end();
    const { run } = await c.workflows.getRun({ runId });
    expect(run?.status).toBe(RunStatus.SUCCEEDED);
    expect(json(run?.output)).toEqual({ t0: { done: true } });
  });

  it("holds assignments a worker does not read yet, and delivers each, in full and once, when it reads", async () => {
    // 200 assignments of 30 KB each: far more than HTTP/2 lets weftd write before the worker reads.
    const n = 200;
    const queue = `work-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({
      definition: { name: queue, tasks: Array.from({ length: n }, (_, i) => task(`t${i}`, [], { queue })) },
    });
    const input = { text: "x".repeat(30_000) };
    const { run } = await c.workflows.trigger({ workflow: queue, input: value(input) });
    const runId = run?.id ?? "";
    const work = openWork();
    // The stream's first message goes out through Connect, later ones straight to the HTTP/2 stream.
    work.send({ queue, workerId: "w", credits: 1 });
    const got: TaskAssignment[] = [...(await work.next("the first assignment")).assignments];
    work.send({ credits: n - 1 });
    await waitFor(
      async () =>
        (await c.workflows.getRun({ runId })).run?.tasks.every((t) => t.status === TaskStatus.RUNNING),
      { message: `all ${n} tasks leased to the stream before it is read` },
    );
    while (got.length < n) got.push(...(await work.next(`assignment ${got.length + 1} of ${n}`)).assignments);
    expect(got).toHaveLength(n);
    expect(new Set(got.map((a) => a.taskId)).size).toBe(n);
    for (const a of got) expect(json(a.runInput)).toEqual(input);
    work.send({ completions: got.map((a) => ({ leaseId: a.leaseId, output: value(a.taskId) })) });
    const answer = await work.next("the answers");
    expect(answer.results.map((r) => r.code)).toEqual(got.map(() => 0));
    work.halfClose();
    await work.end();
    expect((await c.workflows.getRun({ runId })).run?.status).toBe(RunStatus.SUCCEEDED);
  });

  it("works over the Connect protocol on HTTP/2, messages after the first written by weftd itself", async () => {
    const { queue, runId } = await wideRun(3);
    const workers = createClient(
      WorkerService,
      createConnectTransport({ baseUrl: `http://${weftd.address}`, httpVersion: "2" }),
    );
    const work = openWork(workers);
    work.send({ queue, workerId: "w", credits: 1 });
    const got: TaskAssignment[] = [...(await work.next("the first assignment")).assignments];
    work.send({ credits: 2 });
    while (got.length < 3) got.push(...(await work.next(`assignment ${got.length + 1} of 3`)).assignments);
    work.send({ completions: got.map((a) => ({ leaseId: a.leaseId, output: value(a.taskId) })) });
    expect((await work.next("the answers")).results.map((r) => r.code)).toEqual([0, 0, 0]);
    work.halfClose();
    await work.end();
    const { run } = await c.workflows.getRun({ runId });
    expect(run?.status).toBe(RunStatus.SUCCEEDED);
    expect(json(run?.output)).toEqual({ t0: "t0", t1: "t1", t2: "t2" });
  });

  it("refuses a first message without a queue, naming the field", async () => {
    const work = openWork();
    work.send({ workerId: "w", credits: 1 });
    const err = await streamError(work);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/queue: is required/);
  });

  it("refuses more than 1,000 unused credits, another queue, and a lease twice in one message", async () => {
    const cases: [WorkRequestInit, RegExp][] = [
      [{ credits: 1001 }, /credits: would leave 1001 credits unused; at most 1000 may be/],
      [{ queue: "other" }, /queue: must be empty or "q-[0-9a-f]+"/],
      [{ completions: [{ leaseId: "a" }, { leaseId: "a" }] }, /completions\[1\]\.lease_id: appears twice/],
    ];
    for (const [message, expected] of cases) {
      const work = openWork();
      work.send({ queue: `q-${randomUUID().slice(0, 8)}`, workerId: "w" });
      work.send(message);
      const err = await streamError(work);
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(expected);
    }
  });
});

describe("@weft/worker on a Work stream", () => {
  it("takes tasks and reports outputs over one stream, with no PollTask or CompleteTasks call", async () => {
    const { queue, runId } = await wideRun(40);
    const calls: string[] = [];
    const record: Interceptor = (next) => (req) => {
      calls.push(req.method.name);
      return next(req);
    };
    const worker = new Worker({
      queue,
      concurrency: 8,
      handlers: { echo: async (_input, ctx) => ({ task: ctx.taskId }) },
      transport: createWorkerTransport({ address: weftd.address, interceptors: [record] }),
    });
    const running = worker.run();
    await waitFor(async () => (await c.workflows.getRun({ runId })).run?.status === RunStatus.SUCCEEDED, {
      timeoutMs: 20_000,
      message: "the run to succeed",
    });
    await worker.close();
    await running;
    const { run } = await c.workflows.getRun({ runId });
    expect(Object.keys(json(run?.output) as object)).toHaveLength(40);
    expect(calls.filter((name) => name !== "Heartbeat")).toEqual(["Work"]);
  });
});
