/**
 * Completions reported while Redis is down are answered UNAVAILABLE with a short message, the same
 * on a Work stream, in CompleteTasks' results and by CompleteTask, so that a worker retries them
 * (it drops an output answered with a final code); once Redis is back the retries are recorded and
 * the run finishes.
 */
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { type RedisServer, startRedisServer } from "@weft/daemon";
import {
  type CompleteTaskRequestSchema,
  type TaskAssignment,
  WorkerService,
  type WorkRequestSchema,
} from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnWeftd, type WeftdProcess, waitFor, within } from "./support/index.js";
import { json, RunStatus, rpcError, task, value, type WeftClients, weftClients } from "./support/weft.js";

const UNAVAILABLE = [Code.Unavailable, "Redis is unreachable - try again later"];

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;

beforeAll(async () => {
  // AOF: the restarted Redis has the run back.
  redis = await startRedisServer({ persistence: "aof" });
  weftd = await spawnWeftd({ redisUrl: redis.url });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

type WorkRequest = MessageInitShape<typeof WorkRequestSchema>;
type Completion = MessageInitShape<typeof CompleteTaskRequestSchema>;

describe("completions while Redis is down", () => {
  it("are answered UNAVAILABLE on a Work stream, by CompleteTasks and CompleteTask, and recorded when retried after", async () => {
    const queue = `outage-${randomUUID().slice(0, 8)}`;
    const n = 24;
    await c.workflows.submitWorkflow({
      definition: { name: queue, tasks: Array.from({ length: n }, (_, i) => task(`t${i}`, [], { queue })) },
    });
    const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";

    const queued: WorkRequest[] = [{ queue, workerId: "w", credits: n }];
    let wake: (() => void) | undefined;
    let closed = false;
    const requests = (async function* () {
      for (;;) {
        const next = queued.shift();
        if (next !== undefined) yield next;
        else if (closed) return;
        else await new Promise<void>((resolve) => (wake = resolve));
      }
    })();
    const send = (m: WorkRequest) => {
      queued.push(m);
      wake?.();
    };
    const responses = createClient(WorkerService, createGrpcTransport({ baseUrl: weftd.baseUrl }))
      .work(requests)
      [Symbol.asyncIterator]();
    const next = async (what: string) => {
      const r = await within(responses.next(), 15_000, what);
      if (r.done === true) throw new Error(`the Work stream ended before ${what}`);
      return r.value;
    };
    const assignments: TaskAssignment[] = [];
    while (assignments.length < n) assignments.push(...(await next("the assignments")).assignments);
    const completion = (a: TaskAssignment): Completion => ({ leaseId: a.leaseId, output: value(a.taskId) });
    const onStream = assignments.slice(0, 16).map(completion);
    const inBatch = assignments.slice(16, 20).map(completion);
    const oneByOne = assignments.slice(20).map(completion);

    await redis.stop();
    send({ completions: onStream });
    const answer = await next("the answers to the outputs sent while Redis is down");
    expect(answer.results.map((r) => [r.code, r.message])).toEqual(onStream.map(() => UNAVAILABLE));
    const batch = await c.workers.completeTasks({ completions: inBatch });
    expect(batch.results.map((r) => [r.code, r.message])).toEqual(inBatch.map(() => UNAVAILABLE));
    for (const one of oneByOne) {
      const err = await rpcError(c.workers.completeTask(one));
      expect([err.code, err.rawMessage]).toEqual(UNAVAILABLE);
    }

    await redis.restart();
    // A worker retries each output answered UNAVAILABLE, with a pause, until it is recorded.
    await waitFor(
      async () => {
        send({ completions: onStream });
        return (await next("the answers to the retries")).results.every((r) => r.code === 0);
      },
      { message: "the Work stream's retries to be recorded", timeoutMs: 20_000, intervalMs: 250 },
    );
    await waitFor(
      async () =>
        (await c.workers.completeTasks({ completions: inBatch })).results.every((r) => r.code === 0),
      {
        message: "CompleteTasks' retries to be recorded",
        timeoutMs: 20_000,
        intervalMs: 250,
      },
    );
    for (const one of oneByOne) await c.workers.completeTask(one);
    closed = true;
    wake?.();
    for (let r = await responses.next(); r.done !== true; r = await responses.next());

    // Liveness: the run finishes, every output recorded once.
    const run = await waitFor(
      async () => {
        const { run } = await c.workflows.getRun({ runId });
        return run?.status === RunStatus.RUNNING ? undefined : run;
      },
      { message: "the run to finish", timeoutMs: 20_000 },
    );
    expect(RunStatus[run.status]).toBe("SUCCEEDED");
    expect(run.tasks.map((t) => [t.taskId, t.attempt, json(t.output)])).toEqual(
      Array.from({ length: n }, (_, i) => [`t${i}`, 1, `t${i}`]),
    );
    // Nothing unexpected: no raw library text, no INTERNAL logged.
    expect(weftd.logs.filter((l) => l.msg === "unexpected error")).toEqual([]);
  });
});
