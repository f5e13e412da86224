import { Code, ConnectError } from "@connectrpc/connect";
import { Cluster, Redis } from "ioredis";
import { parseRedisTarget, type RedisTarget } from "./redis-target.js";

/**
 * A client of the Redis weftd uses: one server (given directly, or the primary Sentinels name) or a
 * Redis Cluster. Both take the same commands; on a Cluster every multi-key command and script must
 * name keys of one slot (see engine/shared/keys.ts).
 */
export type RedisClient = Redis | Cluster;

/** Longest pause between two reconnection attempts. */
export const MAX_RECONNECT_DELAY_MS = 1000;

/** Delay before reconnection attempt `attempt` (1, 2, …): 50 ms doubling up to {@link MAX_RECONNECT_DELAY_MS}. */
export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt - 1, 10), MAX_RECONNECT_DELAY_MS);
}

/** How a client created by {@link createRedisClient} behaves. */
export interface RedisClientOptions {
  /**
   * Commands wait for Redis to come back (a reconnection, a failover) instead of failing: BullMQ's
   * blocking connections need that. Otherwise a command fails as soon as a connection attempt fails.
   * @defaultValue false
   */
  waitOutOutages?: boolean;
  /**
   * Commands issued in the same tick leave in one write (one per node on a Cluster).
   * @defaultValue true
   */
  autoPipelining?: boolean;
  /**
   * On a Cluster, how often the slot table is read again besides after errors (the pub/sub
   * subscriber follows it). None when unset: a BullMQ blocking connection (one per open task
   * queue) need not poll.
   * @defaultValue undefined
   */
  slotsRefreshIntervalMs?: number;
}

/**
 * A client of the Redis that `url` names (see {@link parseRedisTarget}), tuned for a daemon that
 * must answer UNAVAILABLE rather than hang while Redis is down: it reconnects forever with a capped
 * backoff, and, unless `waitOutOutages`, a command fails as soon as a connection attempt fails (at
 * most about a second after Redis went away; on a Cluster, once the retries of a failover, about
 * 1.6 s, are used up). Commands in flight when a connection drops fail too; they are never
 * replayed.
 */
export function createRedisClient(
  url: string,
  connectionName: string,
  options: RedisClientOptions = {},
): RedisClient {
  return createClientOf(parseRedisTarget(url), connectionName, options);
}

/** {@link createRedisClient} for a parsed target. */
export function createClientOf(
  target: RedisTarget,
  connectionName: string,
  options: RedisClientOptions = {},
): RedisClient {
  const wait = options.waitOutOutages === true;
  const common = {
    connectionName,
    maxRetriesPerRequest: wait ? null : 0,
    autoResendUnfulfilledCommands: wait,
    connectTimeout: 3000,
  };
  const enableAutoPipelining = options.autoPipelining ?? true;
  if (target.kind === "standalone") {
    return new Redis(target.url, { ...common, retryStrategy: reconnectDelay, enableAutoPipelining });
  }
  const tls = target.tls ? {} : undefined;
  const auth = { username: target.username, password: target.password };
  if (target.kind === "sentinel") {
    return new Redis({
      ...common,
      ...auth,
      sentinels: target.sentinels,
      name: target.name,
      db: target.db,
      sentinelUsername: target.sentinelUsername,
      sentinelPassword: target.sentinelPassword,
      tls,
      enableTLSForSentinelMode: target.tls,
      sentinelTLS: tls,
      retryStrategy: reconnectDelay,
      sentinelRetryStrategy: reconnectDelay,
      // Follow a failover the moment the Sentinels announce it, rather than at the next error.
      failoverDetector: true,
      // A primary turned replica refuses writes on connections it keeps: reconnect to the new one.
      reconnectOnError: (err) => err.message.startsWith("READONLY"),
      enableAutoPipelining,
    });
  }
  return new Cluster(target.nodes, {
    redisOptions: { ...common, ...auth, tls },
    // A managed Cluster announces its nodes by address: TLS then checks certificates by host name.
    ...(target.tls ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
    clusterRetryStrategy: reconnectDelay,
    // Waiting clients queue their commands while the Cluster reconnects; the others fail at once.
    enableOfflineQueue: wait,
    enableAutoPipelining,
    // A failover: the command is retried every 100 ms, up to 16 times, before it fails; a MOVED
    // too, so that nodes whose views of the slots differ for a moment have that moment to agree.
    retryDelayOnFailover: 100,
    retryDelayOnMoved: 50,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    maxRedirections: 16,
    slotsRefreshTimeout: 1000,
    ...(options.slotsRefreshIntervalMs === undefined
      ? {}
      : { slotsRefreshInterval: options.slotsRefreshIntervalMs }),
  });
}

/**
 * Defines a Lua script as a command `name` on a client, its keys counted by each call's first
 * argument, once per client. On a Cluster such a command is left out of auto-pipelining: ioredis
 * routes an auto-pipelined command it does not know by its first argument (here the key count),
 * not its first key, and would put it in the pipeline of another node.
 */
export function defineScript(redis: RedisClient, name: string, lua: string): void {
  if (name in redis) return;
  redis.defineCommand(name, { lua });
  if (isCluster(redis)) {
    const ignored = redis.options.autoPipeliningIgnoredCommands;
    if (ignored === undefined) redis.options.autoPipeliningIgnoredCommands = [name];
    else ignored.push(name);
  }
}

/** Whether a client is a Redis Cluster client. */
export function isCluster(redis: RedisClient): redis is Cluster {
  return (redis as { isCluster?: boolean }).isCluster === true;
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
const TRANSIENT_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|CLUSTERDOWN|NOREPLICAS)\b/;

/** Reply prefixes of a Cluster whose slots move (a failover, a resharding), and a cross-slot command. */
const CLUSTER_REPLY = /^(MOVED|ASK|TRYAGAIN|CROSSSLOT)\b/;

/** What ioredis's Cluster and Sentinel clients say when no node can be reached. */
const CLUSTER_UNREACHABLE =
  /^(Failed to refresh slots cache|None of startup nodes is available|Cluster is ended|Cluster isn't ready|Cluster is disconnect|All sentinels are unreachable|Node is disconnected)/;

/** ioredis's Cluster client gives up on a command that kept being redirected or retried. */
const REDIRECTIONS = "Too many Cluster redirections. Last error: ";

/**
 * Why Redis could not serve a command, when it is a reason to answer UNAVAILABLE: `unreachable`
 * (no connection, a node loading or failing over, a Cluster that is down), `cluster` (a slot
 * moving, or a command that named keys of several slots), `memory` (Redis at its maxmemory).
 */
export type RedisTrouble = "unreachable" | "cluster" | "memory";

/** Classifies an error of a Redis command; undefined for one that is not Redis's to answer. */
export function redisTrouble(err: unknown): RedisTrouble | undefined {
  if (!(err instanceof Error)) return undefined;
  const { message } = err;
  if (message.startsWith(REDIRECTIONS)) {
    // The last error says why: a node that cannot be reached, or slots that keep moving.
    const last = message.slice(REDIRECTIONS.length).replace(/^\w*Error: /, "");
    return (
      redisTrouble(Object.assign(new Error(last), { code: (err as NodeJS.ErrnoException).code })) ?? "cluster"
    );
  }
  const code = (err as NodeJS.ErrnoException).code;
  if (
    err.name === "MaxRetriesPerRequestError" ||
    err.name === "ClusterAllFailedError" ||
    message === "Connection is closed." ||
    message.startsWith("Stream isn't writeable") ||
    message === "Command timed out" ||
    // A pipeline (auto-pipelining's too) cut by the connection's close.
    (err.name === "AbortError" && message.startsWith("Command aborted due to connection close")) ||
    (code !== undefined && CONNECTION_ERROR_CODES.has(code)) ||
    /\bECONNREFUSED\b/.test(message) ||
    TRANSIENT_REPLY.test(message) ||
    CLUSTER_UNREACHABLE.test(message)
  )
    return "unreachable";
  if (CLUSTER_REPLY.test(message) || /^(No sharded subscriber|Possible CROSSSLOT)/.test(message))
    return "cluster";
  if (message.startsWith("OOM ")) return "memory";
  return undefined;
}

/** True when `err` says Redis could not be reached or cannot answer right now (see {@link redisTrouble}). */
export function isRedisUnavailableError(err: unknown): boolean {
  return redisTrouble(err) !== undefined;
}

const unavailableListeners = new Set<(err: Error, trouble: RedisTrouble) => void>();

/**
 * Calls `listener` with each Redis error {@link redisErrorToConnect} maps to UNAVAILABLE, and why,
 * so that health turns NOT_SERVING with the first call that fails (see RedisMonitor) and errors
 * that say more than "unreachable" are logged in full; returns the function that removes it.
 */
export function onRedisUnavailable(listener: (err: Error, trouble: RedisTrouble) => void): () => void {
  unavailableListeners.add(listener);
  return () => unavailableListeners.delete(listener);
}

const MESSAGES: Record<RedisTrouble, string> = {
  unreachable: "Redis is unreachable - try again later",
  cluster: "Redis Cluster could not serve the command now (slots moving) - try again later",
  memory: "Redis is out of memory and refuses writes - try again later",
};

/**
 * Maps an error from Redis to what an RPC should fail with: an error that says Redis cannot serve
 * the command now becomes ConnectError UNAVAILABLE with a short message of its own (the client's
 * error is its cause, logged by the Redis monitor), never Redis's text; anything else is returned
 * unchanged. The server applies it to every call, so handlers may simply let Redis errors through.
 */
export function redisErrorToConnect(err: unknown): unknown {
  if (err instanceof ConnectError) return err;
  const trouble = redisTrouble(err);
  if (trouble === undefined) return err;
  for (const listener of unavailableListeners) listener(err as Error, trouble);
  return new ConnectError(MESSAGES[trouble], Code.Unavailable, undefined, undefined, err);
}

/** Waits until `redis` is ready, or `timeoutMs` passes; returns whether it is ready. */
export async function waitForReady(redis: RedisClient, timeoutMs: number): Promise<boolean> {
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
export async function closeRedis(redis: RedisClient, timeoutMs = 1000): Promise<void> {
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
