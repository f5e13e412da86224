import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { StreamLimit } from "../auth.js";
import type { DaemonConfig } from "../config.js";
import type { MetricsRegistry } from "../observability/metrics.js";
import type { RedisClient } from "../redis/redis.js";
import type { DirectServerStream } from "../server/grpc-server-stream.js";
import type { DirectUnary } from "../server/grpc-unary.js";
import type { HealthReporter } from "../server/health.js";

/** What the daemon hands to the Weft services when it starts them. */
export interface ServiceContext {
  /** The daemon's configuration, defaults applied. */
  config: DaemonConfig;
  /** The daemon's logger; add `runId`, `taskId`, `queue`, `workerId` as fields. */
  logger: Logger;
  /** The Redis in use (the private one when none was configured), for extra connections such as BullMQ's. */
  redisUrl: string;
  /** The shared client (see createRedisClient): commands fail fast while Redis is down. */
  redis: RedisClient;
  /** Health reporting: mark a dependency down with `setComponent(name, false)`. */
  health: HealthReporter;
  /**
   * Aborted when shutdown begins. Long calls (a PollTask wait, a WatchRun stream) should end at
   * once; server streams are ended with UNAVAILABLE by the server in any case.
   */
  shuttingDown: AbortSignal;
  /** Metrics served on /metrics. */
  metrics: MetricsRegistry;
}

/** The Weft API implementation the daemon serves. */
export interface WeftServices {
  /** Registers weft.v1.WorkflowService and weft.v1.WorkerService on `router`. */
  register(router: ConnectRouter): void;
  /** Releases everything the services hold; called once, after in-flight calls ended. */
  close(): Promise<void>;
  /** Interceptors to run after the daemon's own (authentication, for instance). */
  interceptors?: Interceptor[];
  /**
   * Unary methods the daemon may answer over plain gRPC without Connect (see grpc-unary.ts); each
   * must also be registered with Connect, which serves every call this path does not take.
   */
  direct?: DirectUnary[];
  /** Server-streaming methods the daemon may answer the same way (see grpc-server-stream.ts). */
  directStreams?: DirectServerStream[];
  /** The per-client limit of open streams, shared by Connect's interceptor and the direct path. */
  streamLimit?: StreamLimit;
}

/** Builds the Weft services; `createWeftServices` in services/index.ts is the production one. */
export type WeftServicesFactory = (ctx: ServiceContext) => Promise<WeftServices>;
