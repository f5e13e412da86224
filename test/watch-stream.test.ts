/**
 * WatchRun over HTTP/2: after its first message, weftd writes a stream's events to the HTTP/2 stream
 * as ready-made envelopes. What a watcher depends on stays the same: every event once, in order,
 * whatever the client's pace, and a stream that goes away frees what it held.
 */
import { randomUUID } from "node:crypto";
import type { RunEvent } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  grpc,
  grpcClient,
  grpcServerStream,
  type RedisServer,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
  waitFor,
  within,
} from "./support/index.js";
import { RunStatus, value, type WeftClients, weftClients } from "./support/weft.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;
let client: grpc.Client;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
  c = weftClients(weftd.address);
  client = grpcClient(weftd.address);
});

afterAll(async () => {
  client?.close();
  await weftd?.stop();
  await redis?.close();
});

/** Submits a workflow of `tasks` independent tasks on a queue of its own and triggers it. */
async function wideRun(tasks: number): Promise<{ runId: string; queue: string }> {
  const queue = `q-${randomUUID()}`;
  await c.workflows.submitWorkflow({
    definition: {
      name: queue,
      tasks: Array.from({ length: tasks }, (_, i) => ({ id: `t${i}`, handler: "h", queue })),
    },
  });
  const { run } = await c.workflows.trigger({ workflow: queue });
  return { runId: run?.id ?? "", queue };
}

/** Completes `tasks` tasks of `queue` in batches, each with an output of `outputChars` characters. */
async function complete(queue: string, tasks: number, outputChars: number): Promise<void> {
  const output = value("x".repeat(outputChars));
  for (let done = 0; done < tasks; ) {
    const res = await c.workers.pollTask({ queue, workerId: "w", maxTasks: 100, wait: { seconds: 10n } });
    const batch = [res.assignment, ...res.moreAssignments].filter((t) => t !== undefined);
    if (batch.length === 0)
      throw new Error(`no task of queue "${queue}" within 10 s after ${done} of ${tasks}`);
    await c.workers.completeTasks({ completions: batch.map((t) => ({ leaseId: t.leaseId, output })) });
    done += batch.length;
  }
}

async function streamsInFlight(): Promise<number> {
  const text = await (await fetch(`${weftd.metricsUrl}/metrics`)).text();
  const line = /^weft_rpc_streams_in_flight (\d+)$/m.exec(text);
  if (line === null) throw new Error("weft_rpc_streams_in_flight is missing from /metrics");
  return Number(line[1]);
}

describe("WatchRun over HTTP/2", () => {
  it("gives a gRPC watcher that stops reading every event, once and in order, when it reads again", async () => {
    const tasks = 600;
    const { runId, queue } = await wideRun(tasks);
    const stream = grpcServerStream(client, WorkflowService.method.watchRun, { runId });
    const sequences: number[] = [];
    const ended = new Promise<grpc.StatusObject>((resolve, reject) => {
      stream.on("status", resolve);
      stream.on("error", reject);
    });
    stream.on("data", (res: { event?: RunEvent }) => sequences.push(Number(res.event?.sequence)));
    await waitFor(() => sequences.length > 0, { message: "the watcher's first event" });
    stream.pause();
    // 600 outputs of 4,000 characters: far more than the HTTP/2 windows and the stream's queue of
    // 1,000 events hold, so weftd stops writing and later reads what the watcher missed from Redis.
    await complete(queue, tasks, 4000);
    await waitFor(async () => (await c.workflows.getRun({ runId })).run?.status === RunStatus.SUCCEEDED, {
      message: "the run to succeed",
    });
    const paused = sequences.length;
    stream.resume();
    const status = await within(ended, 30_000, "the watch to end");
    expect(status.code).toBe(grpc.status.OK);
    expect(paused).toBeLessThan(1000);
    // Run started, then queued, started and completed for each task, then the run's end.
    const last = 2 + 3 * tasks;
    expect(sequences.length).toBe(last);
    expect(sequences).toEqual(Array.from({ length: last }, (_, i) => i + 1));
  });

  it("frees the streams of watchers that go away while events are written to them", async () => {
    const tasks = 200;
    const { runId, queue } = await wideRun(tasks);
    const before = await streamsInFlight();
    const watchers = Array.from({ length: 20 }, () => {
      const stream = grpcServerStream(client, WorkflowService.method.watchRun, { runId });
      let received = 0;
      stream.on("data", () => received++);
      const ended = new Promise<grpc.StatusObject>((resolve) => {
        stream.on("status", resolve);
        // A cancelled call reports CANCELLED as an error too.
        stream.on("error", () => {});
      });
      return { stream, ended, received: () => received };
    });
    await waitFor(() => watchers.every((w) => w.received() > 0), { message: "every watcher's first event" });
    const completing = complete(queue, tasks, 100);
    // Half go away mid-run, while weftd writes to them.
    await waitFor(() => watchers.every((w) => w.received() > 10), { message: "events under way" });
    for (const w of watchers.slice(0, 10)) w.stream.cancel();
    await completing;
    const statuses = await within(Promise.all(watchers.map((w) => w.ended)), 30_000, "every watch to end");
    expect(statuses.map((s) => s.code)).toEqual([
      ...Array(10).fill(grpc.status.CANCELLED),
      ...Array(10).fill(grpc.status.OK),
    ]);
    for (const w of watchers.slice(10)) expect(w.received()).toBe(2 + 3 * tasks);
    await waitFor(async () => (await streamsInFlight()) === before, {
      message: `weft_rpc_streams_in_flight back to ${before}`,
    });
  });
});
