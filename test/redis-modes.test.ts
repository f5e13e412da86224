import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRedisServer } from "@weft/daemon";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type RedisServer,
  SENTINEL_MASTER_NAME,
  spawnWeftd,
  startTestCluster,
  startTestRedis,
  startTestSentinel,
  type TestRedisCluster,
  type TestRedisSentinel,
} from "./support/index.js";
import { RunStatus, task, weftClients } from "./support/weft.js";

/** Where weftd is told to take its Redis URL from, as its refusals say. */
const SETTING = "--redis-url (or WEFT_REDIS_URL, REDIS_URL, or redis.url in the --config file)";

let cluster: TestRedisCluster;
let sentinel: TestRedisSentinel;
let server: RedisServer;

beforeAll(async () => {
  [cluster, sentinel, server] = await Promise.all([
    startTestCluster(),
    startTestSentinel(),
    startTestRedis(),
  ]);
});

afterAll(async () => {
  await Promise.all([cluster?.close(), sentinel?.close(), server?.close()]);
});

/** The message of weftd's fatal log line in its output. */
function fatal(output: string): string {
  for (const line of output.split("\n")) {
    try {
      const parsed = JSON.parse(line) as { level?: number; msg?: string };
      if (parsed.level === 60) return parsed.msg ?? "";
    } catch {
      // Not a log line.
    }
  }
  return `no fatal line in:\n${output}`;
}

/** Starts weftd and expects it to exit 2 before listening; returns its fatal message. */
async function refused(redisUrl: string): Promise<string> {
  const err = await spawnWeftd({ redisUrl }).then(
    async (weftd) => {
      await weftd.stop();
      return new Error("weftd started");
    },
    (e: Error) => e,
  );
  expect(err.message).toContain('weftd exited ({"code":2,"signal":null})');
  return fatal(err.message);
}

describe("a Redis URL that does not match what it names", () => {
  it("refuses a plain redis:// URL of a Cluster node, saying to use redis+cluster://", async () => {
    const node = cluster.nodes[0]?.port;
    expect(await refused(`redis://127.0.0.1:${node}`)).toBe(
      `Redis at 127.0.0.1:${node} is a Redis Cluster node: weftd uses a Cluster only through the Cluster option; ` +
        `set ${SETTING} to redis+cluster://127.0.0.1:${node} (more nodes may follow, comma-separated)`,
    );
  });

  it("refuses a redis+cluster:// URL of a server not in cluster mode", async () => {
    expect(await refused(`redis+cluster://127.0.0.1:${server.port}`)).toBe(
      `Redis at 127.0.0.1:${server.port} is not a Redis Cluster node (redis_mode:standalone): ` +
        `set ${SETTING} to redis://127.0.0.1:${server.port}`,
    );
  });

  it("refuses a redis:// URL of a Sentinel, naming the primary it watches", async () => {
    const port = sentinel.sentinels[0]?.port;
    expect(await refused(`redis://127.0.0.1:${port}`)).toBe(
      `Redis at 127.0.0.1:${port} is a Sentinel, not a data server: ` +
        `set ${SETTING} to redis+sentinel://127.0.0.1:${port}/${SENTINEL_MASTER_NAME}`,
    );
  });

  it("refuses Sentinels that watch no primary of the name given", async () => {
    const port = sentinel.sentinels[0]?.port;
    expect(await refused(`redis+sentinel://127.0.0.1:${port}/nosuchmaster`)).toBe(
      `the Sentinel at 127.0.0.1:${port} watches no primary named "nosuchmaster" (it watches "${SENTINEL_MASTER_NAME}"): ` +
        `set the name in ${SETTING}, redis+sentinel://host:port/<master name>`,
    );
  });

  it("stops once a Redis that was down at startup turns out to be a Cluster node", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-late-cluster-"));
    const node = await startRedisServer({
      dir,
      persistence: "none",
      extraArgs: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
    });
    try {
      await node.stop();
      // Down at startup: weftd serves (NOT_SERVING) and checks again until Redis answers.
      const weftd = await spawnWeftd({ redisUrl: node.url });
      await node.restart();
      const exit = await weftd.waitForExit(20_000);
      expect(exit).toEqual({ code: 2, signal: null });
      expect(fatal(weftd.output)).toBe(
        `Redis at 127.0.0.1:${node.port} is a Redis Cluster node: weftd uses a Cluster only through the Cluster option; ` +
          `set ${SETTING} to redis+cluster://127.0.0.1:${node.port} (more nodes may follow, comma-separated)`,
      );
    } finally {
      await node.close();
    }
  });
});

describe("a Redis URL that matches", () => {
  it("is taken from redis.url in the --config file when no flag or variable gives one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-redis-config-"));
    const file = join(dir, "weft.yaml");
    writeFileSync(file, `redis:\n  url: ${cluster.url}\n`);
    const weftd = await spawnWeftd({ args: ["--config", file] });
    try {
      expect(weftd.logs.find((l) => l.msg === "weftd listening")?.redis).toBe(cluster.url);
      expect(weftd.logs.find((l) => l.msg === "redis checked")?.mode).toBe("cluster");
    } finally {
      await weftd.stop();
    }
  });

  it.each([
    ["a Redis Cluster", () => cluster.url],
    ["Sentinels", () => sentinel.url],
  ])("runs a workflow on %s", async (_what, url) => {
    const weftd = await spawnWeftd({ redisUrl: url() });
    try {
      const checked = weftd.logs.find((l) => l.msg === "redis checked");
      expect(checked?.mode).toBe(url().startsWith("redis+cluster") ? "cluster" : "standalone");
      const c = weftClients(weftd.address);
      const queue = `modes-${Math.random().toString(36).slice(2, 8)}`;
      await c.workflows.submitWorkflow({
        definition: { name: queue, tasks: [task("a", [], { queue }), task("b", ["a"], { queue })] },
      });
      const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
      for (const id of ["a", "b"]) {
        const { assignment } = await c.workers.pollTask({ queue, workerId: "w", wait: { seconds: 10n } });
        expect(assignment?.taskId).toBe(id);
        await c.workers.completeTask({ leaseId: assignment?.leaseId ?? "" });
      }
      expect((await c.workflows.getRun({ runId })).run?.status).toBe(RunStatus.SUCCEEDED);
    } finally {
      await weftd.stop();
    }
  });
});
