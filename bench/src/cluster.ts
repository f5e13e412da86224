import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort, type RedisServer, startRedisServer } from "@weft/daemon";
import { Redis } from "ioredis";

/** A local Redis Cluster of masters only, for the bench. */
export interface BenchCluster {
  /** `redis+cluster://…`, for weftd. */
  url: string;
  /** The masters' redis-server pids (for their CPU). */
  pids: number[];
  /** One client per master (INFO, FLUSHALL, CONFIG RESETSTAT). */
  nodes: Redis[];
  close(): Promise<void>;
}

/**
 * Starts `masters` redis-server processes in cluster mode (no persistence, no replicas: on one
 * machine a replica only takes CPU from the masters) on free ports, joins them with
 * `redis-cli --cluster create`, and waits until every node says the cluster is ok.
 */
export async function startBenchCluster(masters: number): Promise<BenchCluster> {
  const dir = await mkdtemp(join(tmpdir(), "weft-bench-cluster-"));
  const servers: RedisServer[] = [];
  const nodes: Redis[] = [];
  const close = async () => {
    for (const node of nodes) node.disconnect();
    await Promise.allSettled(servers.map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i++) {
      servers.push(
        await startRedisServer({
          dir: join(dir, `node-${i}`),
          persistence: "none",
          extraArgs: [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            String(await freePort()),
          ],
        }),
      );
    }
    await promisify(execFile)("redis-cli", [
      "--cluster",
      "create",
      ...servers.map((s) => `127.0.0.1:${s.port}`),
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    ]);
    for (const s of servers) nodes.push(new Redis(s.url, { maxRetriesPerRequest: null }));
    const deadline = Date.now() + 30_000;
    for (const node of nodes) {
      while (!(await node.cluster("INFO")).includes("cluster_state:ok")) {
        if (Date.now() > deadline) throw new Error("the bench's Redis Cluster did not become ok in 30 s");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    const pids: number[] = [];
    for (const node of nodes) pids.push(Number(/process_id:(\d+)/.exec(await node.info("server"))?.[1] ?? 0));
    return {
      url: `redis+cluster://${servers.map((s) => `127.0.0.1:${s.port}`).join(",")}`,
      pids,
      nodes,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
