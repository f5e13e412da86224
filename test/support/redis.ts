import { type RedisServer, startRedisServer } from "@weft/daemon";

export type { RedisServer };

/**
 * Starts a throw-away redis-server (in memory, temporary directory) on a free loopback port, with
 * `stop()`, `restart()` on the same port, and `close()`. Fails with a message naming the Debian
 * package redis-server when the binary is missing.
 */
export async function startTestRedis(): Promise<RedisServer> {
  return startRedisServer({ persistence: "none" });
}
