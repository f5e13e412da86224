import { randomUUID } from "node:crypto";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { type RedisServer, startRedisServer } from "@weft/daemon";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@weft/sdk/gen/health/v1/health_pb.js";
import { afterEach, describe, expect, it } from "vitest";
import {
  type LogLine,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
  waitFor,
  within,
} from "./support/index.js";
import { RunStatus, rpcError, task, value, type WeftClients, weftClients } from "./support/weft.js";
import { spawnWorker, type WorkerProcess } from "./support/worker-process.js";

/** Warn (40) and error (50) lines: what an operator's alerting counts. */
const isWarnOrWorse = (l: LogLine) => l.level >= 40;

const UNREACHABLE = "redis unreachable: calls fail UNAVAILABLE and health is NOT_SERVING until it is back";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step().catch(() => {});
});

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Follows weftd's health with a Watch stream: every status it sent, in order. */
function watchHealth(weftd: WeftdProcess) {
  const client = createClient(Health, createGrpcTransport({ baseUrl: weftd.baseUrl }));
  const abort = new AbortController();
  const seen: Status[] = [];
  const done = (async () => {
    for await (const res of client.watch({ service: "" }, { signal: abort.signal })) seen.push(res.status);
  })().catch(() => {});
  cleanup.push(async () => {
    abort.abort();
    await done;
  });
  return { client, seen };
}

/** Submits a chain of `length` "add" tasks on `queue` (named after it) and triggers `runs` runs. */
async function chainRuns(c: WeftClients, queue: string, length: number, runs: number): Promise<string[]> {
  await c.workflows.submitWorkflow({
    definition: {
      name: queue,
      tasks: Array.from({ length }, (_, i) =>
        task(`t${i}`, i === 0 ? [] : [`t${i - 1}`], { queue, handler: "add" }),
      ),
    },
  });
  return Promise.all(
    Array.from({ length: runs }, async (_, i) => {
      const { run } = await c.workflows.trigger({ workflow: queue, input: value(i) });
      return run?.id ?? "";
    }),
  );
}

/** Waits until no run of `runIds` is RUNNING any more; returns their final statuses. */
async function finalStatuses(c: WeftClients, runIds: string[], timeoutMs: number): Promise<string[]> {
  let last: string[] = [];
  return waitFor(
    async () => {
      const runs = await Promise.all(runIds.map(async (runId) => (await c.workflows.getRun({ runId })).run));
      last = runs.map(
        (r) => `${r?.id} ${RunStatus[r?.status ?? 0]} (${r?.tasks.filter((t) => t.output).length} done)`,
      );
      return runs.every((r) => r !== undefined && r.status !== RunStatus.RUNNING)
        ? runs.map((r) => RunStatus[r?.status ?? 0] ?? "")
        : undefined;
    },
    {
      message: "every run to reach a final state",
      timeoutMs,
      intervalMs: 200,
    },
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nlast seen:\n${last.join("\n")}`);
  });
}

describe("a Redis outage", () => {
  it("is one line when Redis goes and one when it is back; health agrees with the calls; every run finishes", async () => {
    const OUTAGE_MS = 5000;
    // AOF: the restarted Redis has the runs back.
    const redis: RedisServer = await startRedisServer({ persistence: "aof" });
    cleanup.push(() => redis.close());
    const weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--stalled-interval", "1s"] });
    cleanup.push(() => weftd.kill());
    const c = weftClients(weftd.address);
    const health = watchHealth(weftd);
    const id = randomUUID().slice(0, 8);
    const streamQueue = `outage-stream-${id}`;
    const pollQueue = `outage-poll-${id}`;
    const workers: WorkerProcess[] = [
      await spawnWorker({ address: weftd.address, queue: streamQueue }),
      await spawnWorker({ address: weftd.address, queue: pollQueue, args: ["--no-stream"] }),
    ];
    cleanup.push(() => Promise.all(workers.map((w) => w.kill())));
    const runIds = [...(await chainRuns(c, streamQueue, 400, 3)), ...(await chainRuns(c, pollQueue, 400, 3))];
    // Redis goes away while every run is mid-chain: tasks leased, completions on their way.
    await waitFor(
      async () => {
        const runs = await Promise.all(
          runIds.map(async (runId) => (await c.workflows.getRun({ runId })).run),
        );
        return runs.every(
          (r) => r?.status === RunStatus.RUNNING && r.tasks.some((t) => t.output !== undefined),
        );
      },
      { message: "every run to have completed a task", timeoutMs: 20_000 },
    );
    const warnings = () => JSON.stringify(weftd.logs.filter(isWarnOrWorse).map((l) => [l.msg, l.reason]));
    expect(health.seen, `health before the outage; warnings: ${warnings()}`).toEqual([Status.SERVING]);
    const from = weftd.logs.length;

    const stoppedAt = Date.now();
    await redis.stop();
    // By the time a call fails UNAVAILABLE, health says NOT_SERVING.
    const failed = await waitFor(
      () => rpcError(c.workflows.getRun({ runId: runIds[0] ?? "" })).catch(() => undefined),
      {
        message: "a call to fail while Redis is down",
        timeoutMs: 5000,
        intervalMs: 5,
      },
    );
    expect(failed.code, failed.message).toBe(Code.Unavailable);
    expect(failed.rawMessage).toMatch(/^Redis is unreachable - try again later/);
    expect((await health.client.check({})).status, `after ${failed.message}`).toBe(Status.NOT_SERVING);
    expect((await fetch(`${weftd.metricsUrl}/healthz`)).status).toBe(503);

    await pause(OUTAGE_MS - (Date.now() - stoppedAt));
    const duringOutage = weftd.logs.slice(from).filter(isWarnOrWorse);
    await redis.restart();
    await waitFor(async () => (await health.client.check({})).status === Status.SERVING, {
      message: "SERVING once Redis is back",
      timeoutMs: 5000,
    });

    // Liveness: every run that was in flight finishes.
    expect(await finalStatuses(c, runIds, 90_000)).toEqual(Array(runIds.length).fill("SUCCEEDED"));
    expect(health.seen, `warnings: ${warnings()}`).toEqual([
      Status.SERVING,
      Status.NOT_SERVING,
      Status.SERVING,
    ]);

    // One warn line when Redis went away, one info line when it came back with what the outage kept
    // out of the log; nothing else at warn or above, during the outage or after it.
    const lines = weftd.logs.slice(from);
    const episode = lines.filter(isWarnOrWorse);
    const summary = `${duringOutage.length} warn/error lines during the outage, ${episode.length} in all: ${JSON.stringify(
      episode.map((l) => l.msg),
    )}`;
    expect(
      duringOutage.map((l) => l.msg),
      summary,
    ).toEqual([UNREACHABLE]);
    expect(episode.length, summary).toBeLessThanOrEqual(3);
    const back = lines.filter((l) => l.msg === "redis reachable again");
    expect(back).toHaveLength(1);
    expect(back[0]?.downMs).toBeGreaterThanOrEqual(OUTAGE_MS - 500);
    expect(back[0]?.downMs).toBeLessThan(OUTAGE_MS + 5000);
  }, 180_000);
});

/**
 * A TCP proxy in front of Redis that can freeze a process the moment it sends a PING: it stops
 * the process (SIGSTOP) as the PING passes, lets it run again (SIGCONT) `freezeMs` later, and
 * hands it Redis's answer only then, as a frozen process would read it on resuming. Redis itself
 * answers at once: only the process's own event loop was stuck.
 */
async function freezingProxy(redisPort: number) {
  let armed: { pid: number; freezeMs: number; frozen: () => void; resumed: () => void } | undefined;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(redisPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    let held: Buffer[] | undefined;
    client.on("data", (chunk: Buffer) => {
      const freeze = armed;
      if (freeze !== undefined && /\r\nping\r\n/i.test(chunk.toString("latin1"))) {
        armed = undefined;
        held = [];
        process.kill(freeze.pid, "SIGSTOP");
        freeze.frozen();
        setTimeout(() => {
          process.kill(freeze.pid, "SIGCONT");
          // A moment later, as an answer crossing the network would: the process runs its timers first.
          setTimeout(() => {
            for (const b of held ?? []) client.write(b);
            held = undefined;
            freeze.resumed();
          }, 50);
        }, freeze.freezeMs);
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => (held !== undefined ? held.push(chunk) : client.write(chunk)));
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", close).on("error", close);
    upstream.on("close", close).on("error", close);
  });
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    /** Freezes `pid` at its next PING for `freezeMs`; resolves once it runs again and has the answer. */
    async freezeAtNextPing(pid: number, freezeMs: number): Promise<{ frozenAt: number }> {
      let frozenAt = 0;
      await new Promise<void>((resolve) => {
        armed = { pid, freezeMs, frozen: () => (frozenAt = Date.now()), resumed: resolve };
      });
      return { frozenAt };
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe("a frozen event loop", () => {
  it("does not make Redis look down: health stays SERVING and no call fails", async () => {
    const redis = await startTestRedis();
    cleanup.push(() => redis.close());
    const proxy = await freezingProxy(redis.port);
    cleanup.push(() => proxy.close());
    const weftd = await spawnWeftd({ redisUrl: proxy.url });
    cleanup.push(async () => {
      process.kill(weftd.pid, "SIGCONT");
      await weftd.kill();
    });
    const c = weftClients(weftd.address);
    const health = watchHealth(weftd);
    const queue = `frozen-${randomUUID().slice(0, 8)}`;
    const runIds = await chainRuns(c, queue, 3, 2);
    await waitFor(() => health.seen.length > 0, { message: "the first health status" });

    for (let i = 0; i < 3; i++) {
      // weftd is frozen for 3 s, longer than a PING may go unanswered (2 s), with a PING in flight.
      const freeze = proxy.freezeAtNextPing(weftd.pid, 3000);
      const { frozenAt } = await within(freeze, 10_000, "weftd to send a PING and be frozen with it");
      expect(Date.now() - frozenAt).toBeGreaterThanOrEqual(3000);
      // Calls made right after it resumes are answered.
      const runs = await Promise.all(runIds.map((runId) => c.workflows.getRun({ runId })));
      expect(runs.map((r) => RunStatus[r.run?.status ?? 0])).toEqual(["RUNNING", "RUNNING"]);
      expect((await health.client.check({})).status).toBe(Status.SERVING);
    }
    // Give a wrong verdict time to show: a late PING check runs within a second of the resume.
    await pause(1000);
    expect(health.seen).toEqual([Status.SERVING]);
    expect(weftd.logs.filter((l) => l.msg.startsWith("redis unreachable"))).toEqual([]);
    // What was logged instead: the stalls of weftd's own loop.
    const stalls = weftd.logs.filter((l) => l.msg.startsWith("event loop blocked"));
    expect(stalls[0]?.ms).toBeGreaterThanOrEqual(2900);
    const metrics = await (await fetch(`${weftd.metricsUrl}/metrics`)).text();
    const blocked = Number(/^weft_event_loop_blocked_seconds_total (\S+)$/m.exec(metrics)?.[1]);
    expect(blocked).toBeGreaterThanOrEqual(3 * 2.9);
    expect(metrics).toMatch(/^weft_event_loop_delay_seconds\{quantile="1"\} \d/m);
  }, 120_000);
});
