// In-process daemons with test services: the unary paths of shutdown and of a Redis outage, which
// the stub services cannot exercise.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  createLogger,
  type DaemonHandle,
  type ServiceContext,
  startDaemon,
  type WeftServices,
} from "@weft/daemon";
import {
  HeartbeatResponseSchema,
  PollTaskResponseSchema,
  WorkerService,
} from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startTestRedis, waitFor, within } from "./support/index.js";

let redis: RedisServer;
const daemons: DaemonHandle[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
});
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.close()));
});
afterAll(async () => {
  await redis?.close();
});

/** A WorkerService whose Heartbeat waits for `release` and reads Redis, and whose PollTask long-polls. */
function testServices(
  ctx: ServiceContext,
  hooks: { started?: () => void; release?: Promise<void> },
): WeftServices {
  return {
    register(router: ConnectRouter) {
      router.service(WorkerService, {
        async heartbeat(req, callCtx) {
          hooks.started?.();
          const aborted = new Promise<never>((_, reject) =>
            callCtx.signal.addEventListener("abort", () => reject(callCtx.signal.reason), { once: true }),
          );
          await Promise.race([hooks.release ?? Promise.resolve(), aborted]);
          await ctx.redis.set(`${ctx.config.prefix}:last-lease`, req.leaseId);
          return create(HeartbeatResponseSchema, { cancelRequested: false });
        },
        async pollTask() {
          // A long poll gives up as soon as shutdown begins.
          await new Promise((resolve) => ctx.shuttingDown.addEventListener("abort", resolve, { once: true }));
          return create(PollTaskResponseSchema, {});
        },
      });
    },
    async close() {},
  };
}

async function start(
  hooks: { started?: () => void; release?: Promise<void> },
  shutdownGraceMs = 5000,
  redisUrl = redis.url,
) {
  const daemon = await startDaemon(
    {
      addr: "127.0.0.1:0",
      metricsAddr: "127.0.0.1:0",
      redisUrl,
      prefix: `test-${crypto.randomUUID()}`,
      shutdownGraceMs,
    },
    { logger: createLogger({ level: "silent" }), services: async (ctx) => testServices(ctx, hooks) },
  );
  daemons.push(daemon);
  const client = createClient(WorkerService, createGrpcTransport({ baseUrl: `http://${daemon.address}` }));
  return { daemon, client };
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Waits until the daemon's metrics show `count` unary calls in flight. */
async function waitForUnaryInFlight(daemon: DaemonHandle, count: number): Promise<void> {
  await waitFor(
    async () => {
      const metrics = await (await fetch(`http://${daemon.metricsAddress}/metrics`)).text();
      return metrics.includes(`\nweft_rpc_unary_in_flight ${count}\n`);
    },
    { message: `${count} unary calls in flight` },
  );
}

async function connectError(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail, it succeeded");
}

describe("shutdown of an in-process daemon", () => {
  it("lets an in-flight unary call finish, refuses new ones, and ends long polls at once", async () => {
    const started = deferred();
    const release = deferred();
    const { daemon, client } = await start({ started: started.resolve, release: release.promise });
    const inFlight = client.heartbeat({ leaseId: "lease-1" });
    const poll = client.pollTask({ queue: "q" });
    await within(started.promise, 5000, "the Heartbeat handler to start");
    await waitForUnaryInFlight(daemon, 2);

    const closed = daemon.close();
    expect(await within(poll, 5000, "PollTask to return")).toMatchObject({});
    const refused = await connectError(client.heartbeat({ leaseId: "lease-2" }));
    expect(refused.code).toBe(Code.Unavailable);
    expect(refused.rawMessage).toBe("weftd is shutting down, retry on another replica");

    release.resolve();
    expect((await inFlight).cancelRequested).toBe(false);
    await within(closed, 5000, "close() to finish");
  });

  it("cuts off a unary call still running when the grace period ends", async () => {
    const { daemon, client } = await start({ release: new Promise(() => {}) }, 300);
    const started = Date.now();
    const call = connectError(client.heartbeat({ leaseId: "lease-1" }));
    await waitForUnaryInFlight(daemon, 1);
    await within(daemon.close(), 5000, "close() to finish");
    const err = await call;
    expect(err.code).toBe(Code.Unavailable);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });
});

describe("Redis outage seen by a Weft call", () => {
  it("fails calls that need Redis with UNAVAILABLE, fast, and serves them again once it is back", async () => {
    const own = await startTestRedis();
    try {
      const { daemon, client } = await start({}, 5000, own.url);
      expect((await client.heartbeat({ leaseId: "a" })).cancelRequested).toBe(false);
      await own.stop();
      await waitFor(() => !daemon.health.serving, { message: "NOT_SERVING after Redis stopped" });

      const started = Date.now();
      const err = await connectError(client.heartbeat({ leaseId: "b" }));
      expect(err.code).toBe(Code.Unavailable);
      expect(err.rawMessage).toMatch(/^Redis is unreachable - try again later/);
      expect(Date.now() - started).toBeLessThan(3000);

      await own.restart();
      await waitFor(() => daemon.health.serving, { message: "SERVING after Redis restarted" });
      expect((await client.heartbeat({ leaseId: "c" })).cancelRequested).toBe(false);
    } finally {
      await own.close();
    }
  });
});
