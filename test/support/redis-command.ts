import { Redis } from "ioredis";

/** Sends one command to the redis-server (or Sentinel) on a loopback port, over a connection of its own. */
export async function redisCommand(port: number, args: string[]): Promise<unknown> {
  const redis = new Redis({
    port,
    host: "127.0.0.1",
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  redis.on("error", () => {});
  try {
    await redis.connect();
    return await redis.call(args[0] as string, ...args.slice(1));
  } finally {
    redis.disconnect();
  }
}
