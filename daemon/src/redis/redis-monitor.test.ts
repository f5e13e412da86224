import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { logThrottle } from "../observability/log-throttle.js";
import { HealthState } from "../server/health.js";
import { type RedisServer, startRedisServer } from "./private-redis.js";
import type { RedisClient } from "./redis.js";
import { closeRedis, createRedisClient, redisErrorToConnect, waitForReady } from "./redis.js";
import { RedisMonitor } from "./redis-monitor.js";

let server: RedisServer;
const cleanup: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  server = await startRedisServer({ persistence: "none" });
});
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});
afterAll(async () => {
  await server?.close();
});

function errno(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** A monitor of a fresh client of the test Redis, with its health and its log lines. */
async function monitored(options: { recoveryGraceMs?: number } = {}) {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: "info" }, stream);
  const redis: RedisClient = createRedisClient(server.url, "monitor-test");
  await waitForReady(redis, 5000);
  const health = new HealthState();
  const monitor = new RedisMonitor(redis, "test", health, logger, {
    pingIntervalMs: 100,
    pingTimeoutMs: 500,
    ...options,
  });
  cleanup.push(async () => {
    monitor.stop();
    await closeRedis(redis);
  });
  await waitFor(() => monitor.reachable, "the monitor to see Redis up");
  return { lines, logger, health, monitor, msgs: () => lines.map((l) => l.msg) };
}

async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** How many PINGs the test Redis has answered so far. */
async function pingCalls(): Promise<number> {
  const redis = createRedisClient(server.url, "monitor-test-stats");
  try {
    await waitForReady(redis, 5000);
    const stats = await redis.info("commandstats");
    return Number(/cmdstat_ping:calls=(\d+)/.exec(stats)?.[1] ?? 0);
  } finally {
    await closeRedis(redis);
  }
}

const UNREACHABLE = "redis unreachable: calls fail UNAVAILABLE and health is NOT_SERVING until it is back";

describe("RedisMonitor", () => {
  it("turns NOT_SERVING with the first call that fails UNAVAILABLE, and SERVING with the next PING", async () => {
    const { health, monitor, lines, msgs } = await monitored();
    let seen = "";
    health.onChange(() => {
      seen += health.serving ? "up " : "down ";
    });
    redisErrorToConnect(new Error("Connection is closed."));
    expect(health.serving).toBe(false);
    expect(monitor.reachable).toBe(false);
    // Redis answers: the PING sent at once brings it back.
    await waitFor(() => health.serving, "SERVING again");
    expect(seen).toBe("down up ");
    expect(msgs()).toEqual(["redis connected", UNREACHABLE, "redis reachable again"]);
    expect(lines[1]).toMatchObject({ level: 40, reason: "Connection is closed." });
  });

  it("takes no notice of errors that are not about reaching Redis", async () => {
    const { health, monitor, msgs } = await monitored();
    redisErrorToConnect(new Error("ERR syntax error"));
    monitor.commandFailed(new Error("WRONGTYPE Operation against a key holding the wrong kind of value"));
    expect(monitor.absorb(new Error("Missing lock for job 1"), "could not requeue job")).toBe(false);
    expect(health.serving).toBe(true);
    expect(msgs()).toEqual(["redis connected"]);
  });

  it("counts the errors loops log during an outage and reports them with the line that says Redis is back", async () => {
    const { health, logger, lines, msgs } = await monitored();
    const log = logThrottle(logger);
    const refused = errno("connect ECONNREFUSED 127.0.0.1:1", "ECONNREFUSED");
    // A BullMQ connection sees Redis go before the monitor's own connection does.
    for (let i = 0; i < 3; i++) log.warn({ err: refused, queue: "q" }, "BullMQ worker error");
    log.warn({ err: refused }, "timer worker error");
    log.warn({ err: new Error("Missing lock for job 1") }, "could not requeue job");
    expect(health.serving).toBe(false);
    await waitFor(() => health.serving, "SERVING again");
    expect(msgs()).toEqual([
      "redis connected",
      UNREACHABLE,
      "could not requeue job",
      "redis reachable again",
    ]);
    expect(lines[3]).toMatchObject({
      level: 30,
      suppressed: { "BullMQ worker error": 3, "timer worker error": 1 },
      downMs: expect.any(Number),
    });
  });

  it("asks with a PING, not at once, when a call fails just after Redis is back, and logs no outage if it answers", async () => {
    const { health, logger, lines, msgs } = await monitored({ recoveryGraceMs: 60_000 });
    let seen = "";
    health.onChange(() => {
      seen += health.serving ? "up " : "down ";
    });
    redisErrorToConnect(errno("read ECONNRESET", "ECONNRESET"));
    await waitFor(() => health.serving, "SERVING again");
    // BullMQ's fail-fast connection, not back yet, fails what it was sent during the outage.
    const late = Object.assign(
      new Error(
        'Reached the max retries per request limit (which is 0). Refer to "maxRetriesPerRequest" option for details.',
      ),
      { name: "MaxRetriesPerRequestError" },
    );
    redisErrorToConnect(late);
    logThrottle(logger).warn({ err: late, queue: "q" }, "BullMQ worker error");
    expect(health.serving).toBe(true);
    // Redis answers the PINGs that follow: no second outage, and the late error is not logged.
    const pings = await pingCalls();
    await waitFor(async () => (await pingCalls()) >= pings + 3, "three more PINGs answered");
    expect(seen).toBe("down up ");
    expect(msgs()).toEqual(["redis connected", UNREACHABLE, "redis reachable again"]);
    expect(lines[2]).not.toHaveProperty("suppressed");
  });

  it("counts Redis down again when the PING sent for a call failing just after it came back goes unanswered", async () => {
    const { health, msgs } = await monitored({ recoveryGraceMs: 60_000 });
    redisErrorToConnect(errno("read ECONNRESET", "ECONNRESET"));
    await waitFor(() => health.serving, "SERVING again");
    const admin = createRedisClient(server.url, "monitor-test-admin");
    cleanup.push(() => closeRedis(admin));
    await admin.call("CLIENT", "PAUSE", "1500", "ALL");
    redisErrorToConnect(new Error("Connection is closed."));
    await waitFor(() => !health.serving, "NOT_SERVING once the PING is unanswered for 500 ms");
    await waitFor(() => health.serving, "SERVING once Redis answers again");
    expect(msgs()).toEqual([
      "redis connected",
      UNREACHABLE,
      "redis reachable again",
      UNREACHABLE,
      "redis reachable again",
    ]);
  });

  it("counts the transitions rather than logging each when health flaps", async () => {
    const { health, msgs } = await monitored({ recoveryGraceMs: 0 });
    let downs = 0;
    health.onChange(() => {
      if (!health.serving) downs++;
    });
    // Writes refused while PINGs succeed: each failing call turns health NOT_SERVING, the next PING back.
    for (let i = 0; i < 10; i++) {
      redisErrorToConnect(new Error("READONLY You can't write against a read only replica."));
      await waitFor(() => health.serving, `SERVING again (${i})`);
    }
    expect(downs).toBe(10);
    // Three outages logged one by one, then the first of the rest; the others are counted.
    expect(msgs().filter((m) => m === UNREACHABLE)).toHaveLength(4);
    expect(msgs().filter((m) => m === "redis reachable again")).toHaveLength(4);
  });

  it("follows the connection: down when Redis stops, back when it restarts", async () => {
    const own = await startRedisServer({ persistence: "none" });
    cleanup.push(() => own.close());
    const logger = pino({ level: "silent" });
    const redis = createRedisClient(own.url, "monitor-test");
    await waitForReady(redis, 5000);
    const health = new HealthState();
    const monitor = new RedisMonitor(redis, "own", health, logger);
    cleanup.push(async () => {
      monitor.stop();
      await closeRedis(redis);
    });
    await waitFor(() => health.serving, "SERVING");
    await own.stop();
    await waitFor(() => !health.serving, "NOT_SERVING once Redis stopped");
    await own.restart();
    await waitFor(() => health.serving, "SERVING once Redis restarted");
  });
});
