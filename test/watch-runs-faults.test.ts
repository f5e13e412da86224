/**
 * WatchRuns under faults and on every path: a client that stops reading (the stream's buffer bound),
 * the Connect protocol with JSON (messages rather than ready-made envelopes), a run finished through
 * another replica, a Redis restart, weftd shutting down. Real weftd processes and Redis.
 */
import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { startRedisServer } from "@weft/daemon";
import {
  type WatchRunsRequest,
  WatchRunsRequestSchema,
  type WatchRunsResponse,
  WatchRunsResponseSchema,
} from "@weft/sdk/gen/weft/v1/run_watch_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  grpc,
  grpcClient,
  type RedisServer,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
  waitFor,
  within,
} from "./support/index.js";
import { openRunsWatch } from "./support/watch-runs.js";
import { EventType, RunStatus, value, type WeftClients, weftClients } from "./support/weft.js";

/** A workflow of `tasks` independent tasks on a queue of its own (its name). */
async function wideWorkflow(c: WeftClients, tasks: number): Promise<string> {
  const name = `wide-${randomUUID().slice(0, 8)}`;
  await c.workflows.submitWorkflow({
    definition: {
      name,
      tasks: Array.from({ length: tasks }, (_, i) => ({ id: `t${i}`, handler: "h", queue: name })),
    },
  });
  return name;
}

/** Completes `n` tasks of `queue`, `perCall` at a time, each output `outputChars` characters long. */
async function work(c: WeftClients, queue: string, n: number, outputChars = 1, perCall = 100): Promise<void> {
  const output = value("x".repeat(outputChars));
  for (let done = 0; done < n; ) {
    const maxTasks = Math.min(perCall, n - done);
    const res = await c.workers.pollTask({ queue, workerId: "w", maxTasks, wait: { seconds: 10n } });
    const batch = [res.assignment, ...res.moreAssignments].filter((t) => t !== undefined);
    if (batch.length === 0) throw new Error(`no task of "${queue}" within 10 s after ${done} of ${n}`);
    await c.workers.completeTasks({ completions: batch.map((t) => ({ leaseId: t.leaseId, output })) });
    done += batch.length;
  }
}

async function streamsInFlight(weftd: WeftdProcess): Promise<number> {
  const text = await (await fetch(`${weftd.metricsUrl}/metrics`)).text();
  const line = /^weft_rpc_streams_in_flight (\d+)$/m.exec(text);
  if (line === null) throw new Error("weft_rpc_streams_in_flight is missing from /metrics");
  return Number(line[1]);
}

/** Fails unless none of these runs is left RUNNING. */
async function noneRunning(c: WeftClients, runIds: string[]): Promise<void> {
  for (const runId of runIds) {
    const { run } = await c.workflows.getRun({ runId });
    expect(run?.status, `run ${runId}`).not.toBe(RunStatus.RUNNING);
  }
}

/** A WatchRuns call over grpc-js, which can stop reading (pause) and so exercise HTTP/2 flow control. */
function rawWatch(weftd: WeftdProcess) {
  const client = grpcClient(weftd.address);
  const call = client.makeBidiStreamRequest(
    "/weft.v1.WorkflowService/WatchRuns",
    (req: WatchRunsRequest) => Buffer.from(toBinary(WatchRunsRequestSchema, req)),
    (bytes: Buffer) => fromBinary(WatchRunsResponseSchema, bytes),
  );
  const received: WatchRunsResponse[] = [];
  const status = new Promise<grpc.StatusObject>((resolve) => {
    call.on("status", resolve);
    call.on("error", () => {});
  });
  call.on("data", (res: WatchRunsResponse) => received.push(res));
  return {
    received,
    status,
    sequences: () => received.flatMap((r) => r.events.map((e) => Number(e.sequence))),
    write: (req: WatchRunsRequest) => call.write(req),
    pause: () => call.pause(),
    resume: () => call.resume(),
    end: () => call.end(),
    close: () => client.close(),
  };
}

describe("WatchRuns and a slow client, other protocols, replicas", () => {
  let redis: RedisServer;
  let weftd: WeftdProcess;
  let c: WeftClients;
  beforeAll(async () => {
    redis = await startTestRedis();
    weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--max-watch-buffer", "200"] });
    c = weftClients(weftd.address);
  });
  afterAll(async () => {
    await weftd?.stop();
    await redis?.close();
  });

  it("paces every event of a run to a client that stops reading: each once, in order, and the stream goes on", async () => {
    const name = await wideWorkflow(c, 600);
    const { run } = await c.workflows.trigger({ workflow: name });
    const runId = run?.id ?? "";
    const call = rawWatch(weftd);
    call.write(create(WatchRunsRequestSchema, { addRuns: [{ runId, allEvents: true }] }));
    // RUN_STARTED and 600 TASK_QUEUED: three times the 200 events the stream may hold.
    await waitFor(() => call.sequences().length === 601, { message: "the run's first 601 events" });
    call.pause();
    // 1,800 events with outputs of 2,000 characters: far more than the HTTP/2 windows hold. The
    // follow reads them from the run's list as the client takes them, rather than holding them.
    await work(c, name, 600, 2000);
    call.resume();
    await waitFor(() => call.sequences().length === 2 + 3 * 600, {
      message: "every event of the run",
      timeoutMs: 30_000,
    });
    expect(call.sequences()).toEqual(Array.from({ length: 2 + 3 * 600 }, (_, i) => i + 1));
    expect(call.received.at(-1)?.events.at(-1)?.type).toBe(EventType.RUN_FINISHED);
    call.end();
    const status = await within(call.status, 10_000, "the stream to end");
    expect(status.code).toBe(grpc.status.OK);
    await noneRunning(c, [runId]);
    call.close();
  });

  it("ends the stream of a client that stops reading while runs' ends pile up past --max-watch-buffer, with RESOURCE_EXHAUSTED", async () => {
    const name = await wideWorkflow(c, 1);
    const runIds = (
      await c.workflows.batchTrigger({ requests: Array.from({ length: 600 }, () => ({ workflow: name })) })
    ).responses.map((r) => r.run?.id ?? "");
    const call = rawWatch(weftd);
    call.write(create(WatchRunsRequestSchema, { addRuns: runIds.map((runId) => ({ runId })) }));
    await waitFor(() => call.received.length >= 1, { message: "the stream's first message" });
    call.pause();
    // 600 RUN_FINISHED events with outputs of 2,000 characters, finishing 5 at a time so that they
    // leave as many small messages (grpc-js holds 16 messages, whatever their size, before it stops
    // reading): past the HTTP/2 windows and the 200 events the stream may hold.
    await work(c, name, 600, 2000, 5);
    call.resume();
    const status = await within(call.status, 30_000, "the stream to end");
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toContain("over the limit of 200 events");
    expect(status.details).toContain("--max-watch-buffer");
    call.close();
    // What it received before the end, each run once; resumed, the others' ends come.
    const got = call.received.flatMap((r) => r.events.map((e) => e.runId));
    expect(new Set(got).size).toBe(got.length);
    expect(got.length).toBeLessThan(600);
    const rest = runIds.filter((id) => !got.includes(id));
    const resumed = openRunsWatch(c.workflows, { addRuns: rest.map((runId) => ({ runId })) });
    await resumed.until("the other runs' ends", () => resumed.events.length === rest.length, 20_000);
    expect(new Set(resumed.events.map((e) => e.runId))).toEqual(new Set(rest));
    resumed.end();
    expect(await within(resumed.done, 10_000, "the resumed stream to end")).toBeUndefined();
    await noneRunning(c, runIds);
    await waitFor(async () => (await streamsInFlight(weftd)) === 0, {
      message: "weft_rpc_streams_in_flight back to 0",
    });
  });

  it("serves the Connect protocol with JSON messages the same way", async () => {
    const json = createClient(
      WorkflowService,
      createConnectTransport({
        baseUrl: `http://${weftd.address}`,
        httpVersion: "2",
        useBinaryFormat: false,
      }),
    );
    const name = await wideWorkflow(c, 3);
    const runs = (
      await c.workflows.batchTrigger({ requests: [{ workflow: name }, { workflow: name }] })
    ).responses.map((r) => r.run?.id ?? "");
    const watch = openRunsWatch(json, {
      addRuns: [{ runId: runs[0] as string, allEvents: true }, { runId: runs[1] as string }],
    });
    await work(c, name, 6);
    await watch.until(
      "both runs' ends",
      () => watch.events.filter((e) => e.type === EventType.RUN_FINISHED).length === 2,
    );
    const first = watch.events.filter((e) => e.runId === runs[0]).map((e) => Number(e.sequence));
    expect(first).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(watch.events.filter((e) => e.runId === runs[1]).map((e) => e.type)).toEqual([
      EventType.RUN_FINISHED,
    ]);
    watch.end();
    expect(await within(watch.done, 10_000, "the stream to end")).toBeUndefined();
  });

  it("refuses a workflow that does not exist (NOT_FOUND) and one past the 100 a stream follows (RESOURCE_EXHAUSTED)", async () => {
    const missing = `missing-${randomUUID().slice(0, 8)}`;
    const names = await Promise.all(Array.from({ length: 101 }, () => wideWorkflow(c, 1)));
    const watch = openRunsWatch(c.workflows, {
      addWorkflows: [...names.slice(0, 99), missing].map((workflow) => ({ workflow })),
    });
    await watch.until("the missing workflow's rejection", () => watch.rejections.length >= 1);
    // The refused workflow takes no room: the 100th is followed, the 101st refused.
    watch.send({ addWorkflows: [{ workflow: names[99] as string }] });
    watch.send({ addWorkflows: [{ workflow: names[100] as string }] });
    await watch.until("two rejections", () => watch.rejections.length >= 2);
    expect(watch.rejections.map((r) => [r.workflow, r.code, r.message])).toEqual([
      [missing, Code.NotFound, `workflow "${missing}" not found`],
      [
        names[100],
        Code.ResourceExhausted,
        "this stream already follows 100 workflows (limit 100 per stream)",
      ],
    ]);
    // The 100th is followed: a run of it that finishes is sent.
    const { run } = await c.workflows.trigger({ workflow: names[99] as string });
    await work(c, names[99] as string, 1);
    await watch.until("the run's RUN_FINISHED", () => watch.events.some((e) => e.runId === run?.id));
    watch.cancel();
    await noneRunning(c, [run?.id ?? ""]);
  });

  it("gets the end of a run that another replica finished", async () => {
    const other = await spawnWeftd({ redisUrl: redis.url, prefix: weftd.prefix });
    try {
      const name = await wideWorkflow(c, 1);
      const runIds = (
        await c.workflows.batchTrigger({ requests: Array.from({ length: 10 }, () => ({ workflow: name })) })
      ).responses.map((r) => r.run?.id ?? "");
      const watch = openRunsWatch(c.workflows, {
        addRuns: runIds.map((runId) => ({ runId })),
        addWorkflows: [{ workflow: name }],
      });
      await watch.until("the stream's first message", () => watch.messages.length >= 1);
      await work(weftClients(other.address), name, 10);
      await watch.until("10 RUN_FINISHED events", () => watch.events.length >= 10);
      expect(new Set(watch.events.map((e) => e.runId))).toEqual(new Set(runIds));
      // Once each: the runs followed by id are not sent again for the workflow.
      expect(watch.events).toHaveLength(10);
      watch.cancel();
    } finally {
      await other.stop();
    }
  });
});

describe("WatchRuns through a Redis restart and a weftd shutdown", () => {
  it("keeps following through a Redis restart, then ends UNAVAILABLE when weftd shuts down", async () => {
    const redis = await startRedisServer({ persistence: "aof" });
    const weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--shutdown-grace", "1s"] });
    const c = weftClients(weftd.address);
    try {
      const name = await wideWorkflow(c, 1);
      const runIds = (
        await c.workflows.batchTrigger({ requests: Array.from({ length: 20 }, () => ({ workflow: name })) })
      ).responses.map((r) => r.run?.id ?? "");
      const watch = openRunsWatch(c.workflows, { addRuns: runIds.map((runId) => ({ runId })) });
      await work(c, name, 10);
      await watch.until("10 RUN_FINISHED events", () => watch.events.length >= 10);
      // stop() is a SIGTERM: redis-server flushes its AOF before it exits.
      await redis.stop();
      await redis.restart();
      await waitFor(
        async () => {
          try {
            await c.workflows.getRun({ runId: runIds[0] as string });
            return true;
          } catch {
            return false;
          }
        },
        { message: "weftd to reach Redis again", timeoutMs: 20_000 },
      );
      await work(c, name, 10);
      await watch.until("20 RUN_FINISHED events", () => watch.events.length >= 20, 20_000);
      expect(new Set(watch.events.map((e) => e.runId))).toEqual(new Set(runIds));
      expect(watch.events).toHaveLength(20);
      await noneRunning(c, runIds);
      // A follow still open when weftd shuts down: the stream ends UNAVAILABLE, to resume elsewhere.
      const later = await c.workflows.trigger({ workflow: name });
      watch.send({ addRuns: [{ runId: later.run?.id ?? "" }] });
      // A run that does not exist, in the next message: its rejection shows the follow above is on.
      const missing = randomUUID();
      watch.send({ addRuns: [{ runId: missing }] });
      await watch.until("the missing run's rejection", () =>
        watch.rejections.some((r) => r.runId === missing),
      );
      const stopping = weftd.stop("SIGTERM");
      const err = await within(watch.done, 10_000, "the stream to end at shutdown");
      expect(err?.code).toBe(Code.Unavailable);
      expect(err?.rawMessage).toBe("weftd is shutting down, retry on another replica");
      await stopping;
    } finally {
      await weftd.stop();
      await redis.close();
    }
  });
});
