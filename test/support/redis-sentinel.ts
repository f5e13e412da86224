import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, type RedisServer, startRedisServer } from "@weft/daemon";
import { redisCommand as command } from "./redis-command.js";
import { waitFor } from "./wait-for.js";

/** The name the test Sentinels monitor their primary under. */
export const SENTINEL_MASTER_NAME = "weftmaster";

/** A local Redis primary with one replica, watched by three Sentinels, started by a test. */
export interface TestRedisSentinel {
  /** `redis+sentinel://127.0.0.1:<port>,…/<name>` naming the three Sentinels, for `--redis-url`. */
  readonly url: string;
  /** The two data nodes, the first primary at the start (their roles change with a failover). */
  readonly servers: readonly RedisServer[];
  /** The three Sentinels. */
  readonly sentinels: readonly RedisServer[];
  /** The data node the Sentinels name as primary right now. */
  primary(): Promise<RedisServer>;
  /**
   * Waits until every Sentinel names a primary that runs and that primary has a replica in sync:
   * after a failover, once the replica took over and the old primary (restarted) follows it.
   */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Stops every process and removes their data. */
  close(): Promise<void>;
}

/** Options of {@link startTestSentinel}. */
export interface TestSentinelOptions {
  /**
   * `down-after-milliseconds`: how long the primary may be unreachable before a failover starts.
   * @defaultValue 1000
   */
  downAfterMs?: number;
}

/**
 * Starts a primary, a replica of it and three Sentinels (quorum 2) on free loopback ports, and waits
 * until the Sentinels see the replica.
 */
export async function startTestSentinel(options: TestSentinelOptions = {}): Promise<TestRedisSentinel> {
  const dir = await mkdtemp(join(tmpdir(), "weft-sentinel-"));
  const servers: RedisServer[] = [];
  const sentinels: RedisServer[] = [];
  const close = async () => {
    await Promise.allSettled([...sentinels, ...servers].map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const primary = await startRedisServer({ dir: join(dir, "data-0"), persistence: "none" });
    servers.push(primary);
    servers.push(
      await startRedisServer({
        dir: join(dir, "data-1"),
        persistence: "none",
        extraArgs: ["--replicaof", "127.0.0.1", String(primary.port)],
      }),
    );
    for (let i = 0; i < 3; i++) {
      const sentinelDir = join(dir, `sentinel-${i}`);
      await mkdir(sentinelDir, { recursive: true });
      const port = await freePort();
      // A Sentinel rewrites its configuration file: each gets its own.
      const file = join(sentinelDir, "sentinel.conf");
      await writeFile(
        file,
        [
          `sentinel monitor ${SENTINEL_MASTER_NAME} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} ${options.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${SENTINEL_MASTER_NAME} 10000`,
          `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 1`,
          "",
        ].join("\n"),
      );
      sentinels.push(
        await startRedisServer({
          dir: sentinelDir,
          port,
          persistence: "none",
          configFile: file,
          extraArgs: ["--sentinel"],
          readyLine: /Sentinel ID is/,
        }),
      );
    }
    const setup = handle(servers, sentinels, close);
    await setup.waitHealthy(20_000);
    return setup;
  } catch (err) {
    await close();
    throw err;
  }
}

function handle(
  servers: RedisServer[],
  sentinels: RedisServer[],
  close: () => Promise<void>,
): TestRedisSentinel {
  const primaryPort = async (): Promise<number> => {
    for (const sentinel of sentinels.filter((s) => s.running)) {
      const reply = (await command(sentinel.port, [
        "SENTINEL",
        "get-master-addr-by-name",
        SENTINEL_MASTER_NAME,
      ])) as [string, string] | null;
      if (reply !== null) return Number(reply[1]);
    }
    throw new Error("no Sentinel names a primary");
  };
  return {
    url: `redis+sentinel://${sentinels.map((s) => `127.0.0.1:${s.port}`).join(",")}/${SENTINEL_MASTER_NAME}`,
    servers,
    sentinels,
    async primary() {
      const port = await primaryPort();
      const server = servers.find((s) => s.port === port);
      if (server === undefined) throw new Error(`the Sentinels name ${port}, which is not a test server`);
      return server;
    },
    async waitHealthy(timeoutMs = 30_000) {
      let last = "";
      await waitFor(
        async () => {
          const ports = new Set<number>();
          for (const sentinel of sentinels.filter((s) => s.running)) {
            const reply = (await command(sentinel.port, [
              "SENTINEL",
              "get-master-addr-by-name",
              SENTINEL_MASTER_NAME,
            ])) as [string, string] | null;
            ports.add(Number(reply?.[1]));
          }
          const [port] = ports;
          const primary = servers.find((s) => s.port === port);
          if (ports.size !== 1 || primary === undefined || !primary.running) {
            last = `the Sentinels name ${[...ports].join(", ")}`;
            return false;
          }
          const info = String(await command(primary.port, ["INFO", "replication"]));
          if (!info.includes("role:master") || !/slave0:.*state=online/.test(info)) {
            last = `primary ${primary.port}: ${info.replace(/\r?\n/g, " ")}`;
            return false;
          }
          // Each Sentinel must know the replica, or it could not fail over to it.
          for (const sentinel of sentinels.filter((s) => s.running)) {
            const replicas = (await command(sentinel.port, [
              "SENTINEL",
              "replicas",
              SENTINEL_MASTER_NAME,
            ])) as unknown[];
            if (replicas.length === 0) {
              last = `Sentinel ${sentinel.port} knows no replica yet`;
              return false;
            }
          }
          return true;
        },
        { timeoutMs, intervalMs: 100, message: "the test Sentinel setup to be healthy" },
      ).catch((err: Error) => {
        throw new Error(`${err.message}: ${last}`);
      });
    },
    close,
  };
}
