import { randomUUID } from "node:crypto";
import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { EventType, RunEventSchema, RunStatus } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { type WatchRunResponse, WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startDaemon } from "../../daemon.js";
import { defaultPolicy } from "../../policy.js";
import { type RedisServer, startRedisServer } from "../../redis/private-redis.js";
import { Engine, type EngineOptions } from "../engine.js";
import { newRunId } from "../shared/index.js";

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

async function openEngine(options: Partial<EngineOptions> = {}): Promise<Engine> {
  const engine = await Engine.open(
    redisServer.url,
    redis,
    {
      prefix: `test-${randomUUID()}`,
      runRetentionMs: 60_000,
      pollWaitCapMs: 1000,
      maxTasksPerWorkflow: 100,
      maxPayloadBytes: 1 << 20,
      defaultHeartbeatTimeoutMs: 30_000,
      stalledIntervalMs: 60_000,
      maxWatchersPerReplica: 100,
      reconcileAfterMs: 60_000,
      ...options,
    },
    defaultPolicy(),
    pino({ level: "silent" }),
  );
  engines.push(engine);
  return engine;
}

/**
 * A run written the way the run steps write it: a hash with its status and an event list whose
 * entries are JSON arrays [sequence, time, field, value...], each append announced by publishing
 * the last sequence on the list's key.
 */
class FakeRun {
  readonly id = newRunId();
  private sequence = 0;

  constructor(private readonly engine: Engine) {}

  async create(): Promise<this> {
    await redis.hset(this.engine.keys.run(this.id).run, { id: this.id, s: "R", seq: 0 });
    return this;
  }

  /** Appends `n` task events (the last one final when `finish`), in one step; `output` is JSON text. */
  async append(n: number, finish = false, output = "1"): Promise<void> {
    const keys = this.engine.keys.run(this.id);
    const step = redis.multi();
    for (let i = 0; i < n; i++) {
      this.sequence++;
      const final = finish && i === n - 1;
      step.rpush(
        keys.events,
        JSON.stringify([
          this.sequence,
          Date.now(),
          "ty",
          final ? EventType.RUN_FINISHED : EventType.TASK_STARTED,
          "tk",
          final ? "" : `t${this.sequence}`,
          "a",
          1,
          "rs",
          final ? "S" : "R",
          "o",
          output,
        ]),
      );
    }
    step.hset(keys.run, { seq: this.sequence, ...(finish ? { s: "S" } : {}) });
    step.publish(keys.events, String(this.sequence));
    await step.exec();
  }
}

/** Sequences 1..n. */
function upTo(n: number, from = 1): number[] {
  return Array.from({ length: n - from + 1 }, (_, i) => from + i);
}

/** Takes `n` events from a stream. */
async function take(stream: AsyncIterator<WatchRunResponse>, n: number): Promise<number[]> {
  const seen: number[] = [];
  while (seen.length < n) {
    const r = await stream.next();
    if (r.done === true) throw new Error(`stream ended after ${seen.join(",")}`);
    seen.push(Number(r.value.event?.sequence));
  }
  return seen;
}

/** Takes every event until the stream ends. */
async function rest(stream: AsyncIterator<WatchRunResponse>): Promise<number[]> {
  const seen: number[] = [];
  for (let r = await stream.next(); r.done !== true; r = await stream.next())
    seen.push(Number(r.value.event?.sequence));
  return seen;
}

async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected a rejection");
}

describe("Watches", () => {
  it("sends the history, then live events, each once and in order, and ends after the final event", async () => {
    const engine = await openEngine();
    const run = await new FakeRun(engine).create();
    await run.append(3);
    const stream = engine.watches.watch(run.id, 0, new AbortController().signal);
    expect(await take(stream, 3)).toEqual([1, 2, 3]);
    expect(engine.watches.count).toBe(1);
    expect(engine.hub.size).toBe(1);
    for (let i = 0; i < 20; i++) await run.append(15);
    await run.append(2, true);
    const events = await rest(stream);
    expect(events).toEqual(upTo(305, 4));
    expect(engine.watches.count).toBe(0);
    expect(engine.hub.size).toBe(0);
  });

  it("resumes after any sequence, from Redis or from the replica's window of recent events", async () => {
    const engine = await openEngine();
    const run = await new FakeRun(engine).create();
    await run.append(600);
    // One stream opens the run's feed (the latest 256 events in memory), the others join it: starts
    // before the window are read from Redis, the rest from memory.
    const afters = [590, 0, 100, 344, 345, 599, 600, 650];
    const streams = afters.map((after) => engine.watches.watch(run.id, after, new AbortController().signal));
    const heads = await Promise.all(streams.map((s, i) => ((afters[i] ?? 0) >= 600 ? [] : take(s, 1))));
    expect(heads).toEqual(afters.map((after) => (after >= 600 ? [] : [after + 1])));
    await run.append(1);
    await run.append(1, true);
    const tails = await Promise.all(streams.map(rest));
    expect(tails).toEqual(
      afters.map((after) => (after >= 602 ? [] : after >= 600 ? upTo(602, after + 1) : upTo(602, after + 2))),
    );
    // Started past the final event of a finished run: ends at once, empty, however far past.
    expect(await rest(engine.watches.watch(run.id, 602, new AbortController().signal))).toEqual([]);
    expect(
      await rest(engine.watches.watch(run.id, Number(2n ** 63n - 1n), new AbortController().signal)),
    ).toEqual([]);
    expect(engine.watches.count).toBe(0);
    expect(engine.hub.size).toBe(0);
  });

  it("gives a reader that falls far behind every event, reading what it missed from Redis", async () => {
    const engine = await openEngine();
    const run = await new FakeRun(engine).create();
    await run.append(1);
    const slow = engine.watches.watch(run.id, 0, new AbortController().signal);
    const fast = engine.watches.watch(run.id, 0, new AbortController().signal);
    expect(await take(slow, 1)).toEqual([1]);
    const fastEvents = rest(fast);
    for (let i = 0; i < 25; i++) await run.append(100);
    await run.append(1, true);
    // Every offer reached both streams once the fast one has seen the final event.
    expect(await fastEvents).toEqual(upTo(2502));
    expect(await rest(slow)).toEqual(upTo(2502, 2));
    expect(engine.watches.count).toBe(0);
  });

  it("ends a cancelled stream with the signal's reason and frees it", async () => {
    const engine = await openEngine();
    const run = await new FakeRun(engine).create();
    await run.append(2);
    const abort = new AbortController();
    const streams = Array.from({ length: 5 }, () => engine.watches.watch(run.id, 0, abort.signal));
    for (const s of streams) expect(await take(s, 2)).toEqual([1, 2]);
    const waiting = streams.map((s) => s.next());
    expect(engine.watches.count).toBe(5);
    abort.abort(new ConnectError("client went away", Code.Canceled));
    for (const w of waiting) {
      const err = await rejection(w);
      expect([err.code, err.rawMessage]).toEqual([Code.Canceled, "client went away"]);
    }
    expect(engine.watches.count).toBe(0);
    expect(engine.hub.size).toBe(0);
    // return() (what Connect calls when a call ends early) frees a stream too.
    const other = engine.watches.watch(run.id, 0, new AbortController().signal);
    expect(await take(other, 2)).toEqual([1, 2]);
    expect(await other.return?.()).toEqual({ done: true, value: undefined });
    expect(engine.watches.count).toBe(0);
    expect(engine.hub.size).toBe(0);
  });

  it("refuses streams past the replica's limit, and takes new ones once others are gone", async () => {
    const engine = await openEngine({ maxWatchersPerReplica: 2 });
    const run = await new FakeRun(engine).create();
    await run.append(1);
    const first = engine.watches.watch(run.id, 0, new AbortController().signal);
    const second = engine.watches.watch(run.id, 0, new AbortController().signal);
    expect(await take(first, 1)).toEqual([1]);
    expect(await take(second, 1)).toEqual([1]);
    const refused = await rejection(engine.watches.watch(run.id, 0, new AbortController().signal).next());
    expect([refused.code, refused.rawMessage]).toEqual([
      Code.ResourceExhausted,
      "this replica already serves 2 watchers (limit 2)",
    ]);
    await first.return?.();
    const third = engine.watches.watch(run.id, 0, new AbortController().signal);
    expect(await take(third, 1)).toEqual([1]);
    expect(engine.watches.count).toBe(2);
  });

  it("answers a malformed or unknown run id with its code", async () => {
    const engine = await openEngine();
    const malformed = await rejection(engine.watches.watch("nope", 0, new AbortController().signal).next());
    expect([malformed.code, malformed.rawMessage]).toEqual([
      Code.InvalidArgument,
      'run_id: "nope" is not a run id',
    ]);
    const id = newRunId();
    const unknown = await rejection(engine.watches.watch(id, 0, new AbortController().signal).next());
    expect([unknown.code, unknown.rawMessage]).toEqual([Code.NotFound, `run "${id}" not found`]);
    expect(engine.watches.count).toBe(0);
  });

  it("builds each event once for all the run's streams", async () => {
    const engine = await openEngine();
    const run = await new FakeRun(engine).create();
    const streams = Array.from({ length: 3 }, () =>
      engine.watches.watch(run.id, 0, new AbortController().signal),
    );
    const received = streams.map(() => [] as WatchRunResponse[]);
    const next = async () => {
      for (const [i, s] of streams.entries()) received[i]?.push((await s.next()).value as WatchRunResponse);
    };
    // The first event from the feed's window; once a stream has the second (live, the run still
    // running), it takes live events, so the final one is the feed's too.
    await run.append(1);
    await next();
    await run.append(1);
    await next();
    await run.append(1, true);
    await next();
    for (const s of streams) expect(await s.next()).toEqual({ done: true, value: undefined });
    expect(received.map((r) => r.map((m) => Number(m.event?.sequence)))).toEqual([
      [1, 2, 3],
      [1, 2, 3],
      [1, 2, 3],
    ]);
    for (const r of received.slice(1)) for (const [j, m] of r.entries()) expect(m).toBe(received[0]?.[j]);
    expect(received[0]?.[2]?.event?.runStatus).toBe(RunStatus.SUCCEEDED);
  });

  it("keeps at most 1 MiB of a run's latest events in memory", async () => {
    const engine = await openEngine();
    const run = await new FakeRun(engine).create();
    // 30 events of 100,002 bytes each: the feed keeps the last 10.
    await run.append(30, false, JSON.stringify("x".repeat(100_000)));
    const first = engine.watches.watch(run.id, 0, new AbortController().signal);
    const second = engine.watches.watch(run.id, 0, new AbortController().signal);
    const a: WatchRunResponse[] = [];
    const b: WatchRunResponse[] = [];
    for (let i = 0; i < 30; i++) {
      a.push((await first.next()).value as WatchRunResponse);
      b.push((await second.next()).value as WatchRunResponse);
    }
    expect(a.map((m) => Number(m.event?.sequence))).toEqual(upTo(30));
    expect(b.map((m) => Number(m.event?.sequence))).toEqual(upTo(30));
    // Each stream read events 1 to 20 from Redis, and shares 21 to 30 with the other.
    expect(a.map((m, i) => m === b[i])).toEqual(upTo(30).map((sequence) => sequence > 20));
    await first.return?.();
    await second.return?.();
  });
});

describe("WatchRun", () => {
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  let baseUrl: string;

  beforeAll(async () => {
    daemon = await startDaemon({
      addr: "127.0.0.1:0",
      metricsAddr: "127.0.0.1:0",
      redisUrl: redisServer.url,
      prefix: `test-${randomUUID()}`,
      insecure: true,
      logLevel: "silent",
    });
    baseUrl = `http://${daemon.address}`;
  });

  afterAll(async () => {
    await daemon?.close();
  });

  it("sends the same events over gRPC, gRPC-Web and the Connect protocol, in binary and JSON, over HTTP/1.1 and HTTP/2", async () => {
    const grpc = createGrpcTransport({ baseUrl });
    const queue = `q-${randomUUID()}`;
    const workflows = createClient(WorkflowService, grpc);
    const workers = createClient(WorkerService, grpc);
    await workflows.submitWorkflow({
      definition: { name: queue, tasks: [{ id: "a", handler: "h", queue }] },
    });
    const runId = (await workflows.trigger({ workflow: queue })).run?.id ?? "";
    const transports: Record<string, Transport> = {
      grpc,
      "grpc-web": createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
      "connect binary": createConnectTransport({ baseUrl, httpVersion: "1.1" }),
      "connect JSON": createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
      // Over HTTP/2, binary streams get their events after the first as envelopes written straight
      // to the HTTP/2 stream; JSON ones go through Connect's own pipeline.
      "grpc-web HTTP/2": createGrpcWebTransport({ baseUrl, httpVersion: "2" }),
      "connect binary HTTP/2": createConnectTransport({ baseUrl, httpVersion: "2" }),
      "connect JSON HTTP/2": createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: false }),
    };
    const watched = Object.entries(transports).map(async ([protocol, transport]) => {
      const events: unknown[] = [];
      for await (const res of createClient(WorkflowService, transport).watchRun({ runId }))
        events.push(res.event === undefined ? undefined : toJson(RunEventSchema, res.event));
      return [protocol, events] as const;
    });
    const t = (await workers.pollTask({ queue, workerId: "w", wait: { seconds: 10n } })).assignment;
    await workers.completeTask({
      leaseId: t?.leaseId ?? "",
      output: { kind: { case: "numberValue", value: 7 } },
    });
    const results = Object.fromEntries(await Promise.all(watched));
    const expected = results.grpc as Record<string, unknown>[];
    expect(expected.map((e) => [e.sequence, e.type])).toEqual([
      ["1", "EVENT_TYPE_RUN_STARTED"],
      ["2", "EVENT_TYPE_TASK_QUEUED"],
      ["3", "EVENT_TYPE_TASK_STARTED"],
      ["4", "EVENT_TYPE_TASK_COMPLETED"],
      ["5", "EVENT_TYPE_RUN_FINISHED"],
    ]);
    expect(expected[3]?.output).toBe(7);
    expect(results).toEqual(Object.fromEntries(Object.keys(transports).map((p) => [p, expected])));
  });

  it("answers a negative after_sequence and an unknown run with their codes", async () => {
    const workflows = createClient(WorkflowService, createGrpcTransport({ baseUrl }));
    const watch = async (runId: string, afterSequence: bigint) => {
      for await (const _ of workflows.watchRun({ runId, afterSequence })) {
        // no event expected
      }
    };
    const negative = await rejection(watch(newRunId(), -1n));
    expect([negative.code, negative.rawMessage]).toEqual([
      Code.InvalidArgument,
      "after_sequence: must not be negative",
    ]);
    const id = newRunId();
    const unknown = await rejection(watch(id, 0n));
    expect([unknown.code, unknown.rawMessage]).toEqual([Code.NotFound, `run "${id}" not found`]);
  });
});
