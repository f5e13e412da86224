import type { ChainableCommander } from "ioredis";
import { isCluster, type RedisClient } from "../../redis/redis.js";

/**
 * A pipeline whose commands may name keys of any slot: `redis.pipeline()` on one server (one
 * write, one round trip); on a Redis Cluster, where one pipeline may only hold keys of one node,
 * the same commands sent one by one through the client's auto-pipelining, which groups them by
 * node (one write per node). `exec()` answers `[error, value]` per command, in order, either way.
 * On a Cluster the commands leave as they are chained, not at `exec()`.
 */
export function anySlotPipeline(redis: RedisClient): ChainableCommander {
  if (!isCluster(redis)) return redis.pipeline();
  const calls: Promise<[Error | null, unknown]>[] = [];
  const client = redis as unknown as Record<string | symbol, unknown>;
  const pipeline: ChainableCommander = new Proxy({} as ChainableCommander, {
    get(_target, name) {
      if (name === "exec") return () => Promise.all(calls);
      if (name === "length") return calls.length;
      const command = client[name];
      if (typeof command !== "function") return undefined;
      return (...args: unknown[]) => {
        const sent = (command as (...a: unknown[]) => Promise<unknown>).apply(redis, args);
        calls.push(
          sent.then(
            (value) => [null, value] as [null, unknown],
            (err: Error) => [err, null],
          ),
        );
        return pipeline;
      };
    },
  });
  return pipeline;
}
