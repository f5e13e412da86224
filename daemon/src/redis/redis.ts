import { Code, ConnectError } from "@connectrpc/connect";
import { Redis, type RedisOptions } from "ioredis";

/** Longest pause between two reconnection attempts. */
export const MAX_RECONNECT_DELAY_MS = 1000;

/** Delay before reconnection attempt `attempt` (1, 2, …): 50 ms doubling up to {@link MAX_RECONNECT_DELAY_MS}. */
export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt - 1, 10), MAX_RECONNECT_DELAY_MS);
}

/**
 * An ioredis client tuned for a daemon that must answer UNAVAILABLE rather than hang while Redis is
 * down: it reconnects forever with a capped backoff, and a command fails as soon as a connection
 * attempt fails (`maxRetriesPerRequest: 0`), so at most about a second after Redis went away.
 * Commands in flight when the connection drops fail too; they are never replayed.
 * Pass `overrides` for special connections (BullMQ's blocking ones need `maxRetriesPerRequest: null`).
 */
export function createRedisClient(url: string, connectionName: string, overrides: RedisOptions = {}): Redis {
  return new Redis(url, {
    connectionName,
    retryStrategy: reconnectDelay,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: 3000,
    // Commands issued in the same tick leave in one write: many concurrent steps, few system calls.
    enableAutoPipelining: true,
    ...overrides,
  });
}

const CONNECTION_ERROR_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/** Reply prefixes Redis uses for "not now, try again". */
const TRANSIENT_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/;

/** True when `err` says Redis could not be reached or cannot answer right now. */
export function isRedisUnavailableError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  return (
    err.name === "MaxRetriesPerRequestError" ||
    err.message === "Connection is closed." ||
    err.message.startsWith("Stream isn't writeable") ||
    err.message === "Command timed out" ||
    // A pipeline (auto-pipelining's too) cut by the connection's close.
    (err.name === "AbortError" && err.message.startsWith("Command aborted due to connection close")) ||
    (code !== undefined && CONNECTION_ERROR_CODES.has(code)) ||
    TRANSIENT_REPLY.test(err.message)
  );
}

const unavailableListeners = new Set<(err: Error) => void>();

/**
 * Calls `listener` with each Redis connection error {@link redisErrorToConnect} maps to UNAVAILABLE,
 * so that health turns NOT_SERVING with the first call that fails (see RedisMonitor); returns the
 * function that removes it.
 */
export function onRedisUnavailable(listener: (err: Error) => void): () => void {
  unavailableListeners.add(listener);
  return () => unavailableListeners.delete(listener);
}

/**
 * Maps an error from Redis to what an RPC should fail with: a connection error becomes
 * ConnectError UNAVAILABLE, with a short message of its own (the client's error is its cause, and
 * the health log says why Redis is down); anything else is returned unchanged. The server applies
 * it to every call, so handlers may simply let Redis errors through.
 */
export function redisErrorToConnect(err: unknown): unknown {
  if (err instanceof ConnectError || !isRedisUnavailableError(err)) return err;
  for (const listener of unavailableListeners) listener(err as Error);
  return new ConnectError(
    "Redis is unreachable - try again later",
    Code.Unavailable,
    undefined,
    undefined,
    err,
  );
}

/** Waits until `redis` is ready, or `timeoutMs` passes; returns whether it is ready. */
export async function waitForReady(redis: Redis, timeoutMs: number): Promise<boolean> {
  if (redis.status === "ready") return true;
  return new Promise((resolve) => {
    const done = (ready: boolean) => {
      clearTimeout(timer);
      redis.off("ready", onReady);
      resolve(ready);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.on("ready", onReady);
  });
}

/** Closes `redis`: QUIT when connected (bounded by `timeoutMs`), a plain disconnect otherwise. */
export async function closeRedis(redis: Redis, timeoutMs = 1000): Promise<void> {
  if (redis.status === "end") return;
  if (redis.status !== "ready") {
    redis.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([redis.quit(), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
  } catch {
    // QUIT failing means the connection is already gone, which is what we want.
  } finally {
    clearTimeout(timer);
    redis.disconnect();
  }
}
