import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RedisServerMissingError, startRedisServer } from "@weft/daemon";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@weft/sdk/gen/health/v1/health_pb.js";
import { describe, expect, it } from "vitest";
import { grpcClient, grpcUnary, spawnWeftd, waitFor } from "./support/index.js";

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

describe("private redis-server", () => {
  it("is started under .weft/redis when no Redis URL is given, and stopped on SIGINT", async () => {
    const cwd = await mkdtemp(join(tmpdir(), "weftd-cwd-"));
    const weftd = await spawnWeftd({ cwd });
    try {
      const started = await weftd.waitForLog(
        (l) => l.msg.startsWith("started a private redis-server"),
        "redis start",
      );
      const port = Number(new URL(started.redis as string).port);
      expect(started.dir).toBe(join(cwd, ".weft/redis"));
      expect(existsSync(join(cwd, ".weft/redis/appendonlydir"))).toBe(true);
      const client = grpcClient(weftd.address);
      try {
        expect((await grpcUnary(client, Health.method.check, { service: "" })).status).toBe(Status.SERVING);
      } finally {
        client.close();
      }

      expect(await weftd.stop("SIGINT")).toEqual({ code: 0, signal: null });
      expect(await listening(port)).toBe(false);
    } finally {
      await weftd.kill();
      await rm(cwd, { recursive: true, force: true });
    }
  });

  it("does not outlive a weftd killed with SIGKILL", async () => {
    const cwd = await mkdtemp(join(tmpdir(), "weftd-cwd-"));
    const weftd = await spawnWeftd({ cwd });
    try {
      const started = await weftd.waitForLog(
        (l) => l.msg.startsWith("started a private redis-server"),
        "redis start",
      );
      const port = Number(new URL(started.redis as string).port);
      expect(await listening(port)).toBe(true);
      expect(await weftd.kill()).toEqual({ code: null, signal: "SIGKILL" });
      await waitFor(async () => !(await listening(port)), { message: "the private redis-server to stop" });
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  });

  it("names the Debian package when redis-server is missing", async () => {
    const start = startRedisServer({ binary: "/nonexistent/redis-server" });
    await expect(start).rejects.toBeInstanceOf(RedisServerMissingError);
    await expect(start).rejects.toThrow(/apt-get install redis-server/);
  });

  it("restarts on the same port", async () => {
    const redis = await startRedisServer();
    try {
      const port = redis.port;
      await redis.stop();
      expect(redis.running).toBe(false);
      expect(await listening(port)).toBe(false);
      await redis.restart();
      expect(redis.running).toBe(true);
      expect(redis.port).toBe(port);
      expect(await listening(port)).toBe(true);
    } finally {
      await redis.close();
    }
  });
});
