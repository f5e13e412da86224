import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort, type RedisServer, startRedisServer } from "@weft/daemon";
import { redisCommand as command } from "./redis-command.js";
import { waitFor } from "./wait-for.js";

const run = promisify(execFile);

/** One redis-server of a test Cluster. */
export interface ClusterNode {
  readonly port: number;
  readonly server: RedisServer;
}

/** A local Redis Cluster started by a test: masters with one replica each, on free loopback ports. */
export interface TestRedisCluster {
  /** `redis+cluster://127.0.0.1:<port>,…` naming every master, for weftd's `--redis-url`. */
  readonly url: string;
  /** Every node, masters first as created (their roles change with a failover). */
  readonly nodes: readonly ClusterNode[];
  /** The node serving `slot` as master right now. */
  masterOf(slot: number): Promise<ClusterNode>;
  /** The master nodes right now, by the slots they serve. */
  masters(): Promise<ClusterNode[]>;
  /** The replicas of a master right now. */
  replicasOf(master: ClusterNode): Promise<ClusterNode[]>;
  /**
   * Waits until every live node says `cluster_state:ok` and none counts a master as failed: after
   * a failover, once the replica took over.
   */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Stops every node and removes their data. */
  close(): Promise<void>;
}

/** Options of {@link startTestCluster}. */
export interface TestClusterOptions {
  /**
   * Masters (each gets one replica).
   * @defaultValue 3
   */
  masters?: number;
  /**
   * `cluster-node-timeout`: how long a master may be unreachable before its replica takes over.
   * @defaultValue 1000
   */
  nodeTimeoutMs?: number;
  /**
   * `aof` keeps each node's data across a kill and restart.
   * @defaultValue "none"
   */
  persistence?: "aof" | "none";
}

/**
 * Starts a Redis Cluster of `masters` masters with one replica each (redis-server in cluster mode,
 * joined by `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`) on free ports, and
 * waits until every node reports the cluster healthy.
 */
export async function startTestCluster(options: TestClusterOptions = {}): Promise<TestRedisCluster> {
  const masters = options.masters ?? 3;
  const dir = await mkdtemp(join(tmpdir(), "weft-cluster-"));
  const nodes: ClusterNode[] = [];
  const close = async () => {
    await Promise.allSettled(nodes.map((n) => n.server.close()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const started = await Promise.all(
      Array.from({ length: masters * 2 }, async (_, i) => {
        const busPort = await freePort();
        const server = await startRedisServer({
          dir: join(dir, `node-${i}`),
          persistence: options.persistence ?? "none",
          extraArgs: [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            String(options.nodeTimeoutMs ?? 1000),
            // The bus port is port + 10000 unless given, which may be taken or out of range.
            "--cluster-port",
            String(busPort),
          ],
        });
        return { port: server.port, server };
      }),
    );
    nodes.push(...started);
    await run("redis-cli", [
      "--cluster",
      "create",
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      "--cluster-replicas",
      "1",
      "--cluster-yes",
    ]);
    const cluster = handle(nodes, close);
    await cluster.waitHealthy(20_000);
    return cluster;
  } catch (err) {
    await close();
    throw err;
  }
}

function handle(nodes: ClusterNode[], close: () => Promise<void>): TestRedisCluster {
  const byPort = new Map(nodes.map((n) => [n.port, n]));
  const live = () => nodes.filter((n) => n.server.running);
  const slots = async (): Promise<[number, number, number][]> => {
    for (const node of live()) {
      try {
        const reply = (await command(node.port, ["CLUSTER", "SLOTS"])) as [
          number,
          number,
          [string, number],
        ][];
        return reply.map(([from, to, master]) => [from, to, master[1]]);
      } catch {
        // This node does not answer: ask another.
      }
    }
    throw new Error("no node of the test cluster answers");
  };
  return {
    url: `redis+cluster://${nodes
      .slice(0, nodes.length / 2)
      .map((n) => `127.0.0.1:${n.port}`)
      .join(",")}`,
    nodes,
    async masterOf(slot) {
      for (const [from, to, port] of await slots()) {
        const node = byPort.get(port);
        if (slot >= from && slot <= to && node !== undefined) return node;
      }
      throw new Error(`no master serves slot ${slot}`);
    },
    async masters() {
      const ports = new Set((await slots()).map(([, , port]) => port));
      return nodes.filter((n) => ports.has(n.port));
    },
    async replicasOf(master) {
      const id = String(await command(master.port, ["CLUSTER", "MYID"]));
      const lines = (await command(master.port, ["CLUSTER", "REPLICAS", id])) as string[];
      const ports = new Set(lines.map((l) => Number(/:(\d+)@/.exec(l)?.[1])));
      return nodes.filter((n) => ports.has(n.port));
    },
    async waitHealthy(timeoutMs = 30_000) {
      let last = "";
      const waited = waitFor(
        async () => {
          for (const node of live()) {
            const info = String(await command(node.port, ["CLUSTER", "INFO"]));
            if (!info.includes("cluster_state:ok")) {
              last = `node ${node.port}: ${/cluster_state:\w+/.exec(info)?.[0]}`;
              return false;
            }
            // Every slot served by a master that runs, as this node sees it.
            const reply = (await command(node.port, ["CLUSTER", "SLOTS"])) as [
              number,
              number,
              [string, number],
            ][];
            let covered = 0;
            for (const [from, to, master] of reply) {
              if (byPort.get(master[1])?.server.running !== true) {
                last = `node ${node.port} says slots ${from}-${to} are served by ${master[1]}, which is down`;
                return false;
              }
              covered += to - from + 1;
            }
            if (covered !== 16384) {
              last = `node ${node.port} knows masters for ${covered} slots of 16384`;
              return false;
            }
          }
          return true;
        },
        { timeoutMs, intervalMs: 100, message: "the test cluster to be healthy" },
      );
      await waited.catch((err: Error) => {
        throw new Error(`${err.message}: ${last}`);
      });
    },
    close,
  };
}
