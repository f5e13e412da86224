import { type RedisServer as ServerProcess, startRedisServer } from "@weft/daemon";
import { Cluster, Redis } from "ioredis";
import { startTestCluster, type TestRedisCluster } from "./redis-cluster.js";
import { redisCommand } from "./redis-command.js";

/**
 * The Redis of a test: one redis-server, or — when the test runs in the `cluster` project of
 * vitest.config.ts (WEFT_TEST_REDIS=cluster) — a local 3-master Redis Cluster with a replica each.
 * `url` is what weftd's --redis-url takes either way; `stop()`, `restart()` and `kill()` (outage
 * tests) exist only for one server.
 */
export interface RedisServer extends ServerProcess {
  /** Which Redis this is. */
  readonly kind: "standalone" | "cluster";
  /** A client of it for looking at keys (an ioredis Cluster client on a Cluster); disconnect it. */
  client(): Redis | Cluster;
  /** The keys matching `pattern`, on every master. */
  keys(pattern: string): Promise<string[]>;
  /** Client connections open, summed over the masters. */
  connectedClients(): Promise<number>;
}

/** Whether this test process runs against a Redis Cluster (the `cluster` project of vitest.config.ts). */
export const ON_CLUSTER = process.env.WEFT_TEST_REDIS === "cluster";

/**
 * Starts a throw-away Redis on free loopback ports: a redis-server (in memory, temporary directory)
 * with `stop()`, `restart()` on the same port, `kill()` and `close()`; in the `cluster` project, a
 * Redis Cluster of three masters with a replica each. Fails with a message naming the Debian
 * package redis-server when the binary is missing.
 */
export async function startTestRedis(): Promise<RedisServer> {
  if (ON_CLUSTER) return onCluster(await startTestCluster());
  const server = await startRedisServer({ persistence: "none" });
  return Object.assign(server, {
    kind: "standalone" as const,
    client: () => new Redis(server.url),
    keys: async (pattern: string) => (await redisCommand(server.port, ["KEYS", pattern])) as string[],
    connectedClients: async () => clientsOf(server.port),
  });
}

function onCluster(cluster: TestRedisCluster): RedisServer {
  const first = cluster.nodes[0] as TestRedisCluster["nodes"][number];
  const unsupported = (what: string) => () =>
    Promise.reject(new Error(`${what} is for one redis-server; this test runs on a Redis Cluster`));
  const masterPorts = async () => (await cluster.masters()).map((n) => n.port);
  return {
    kind: "cluster",
    port: first.port,
    url: cluster.url,
    dir: first.server.dir,
    get running() {
      return cluster.nodes.every((n) => n.server.running);
    },
    stop: unsupported("stop()"),
    restart: unsupported("restart()"),
    kill: unsupported("kill()"),
    close: () => cluster.close(),
    client: () => new Cluster(cluster.nodes.slice(0, 3).map((n) => ({ host: "127.0.0.1", port: n.port }))),
    async keys(pattern) {
      const found: string[] = [];
      for (const port of await masterPorts())
        found.push(...((await redisCommand(port, ["KEYS", pattern])) as string[]));
      return found;
    },
    async connectedClients() {
      let total = 0;
      for (const port of await masterPorts()) total += await clientsOf(port);
      return total;
    },
  };
}

async function clientsOf(port: number): Promise<number> {
  const info = String(await redisCommand(port, ["INFO", "clients"]));
  // This very connection is not one of the test's.
  return Number(/connected_clients:(\d+)/.exec(info)?.[1] ?? 0) - 1;
}
