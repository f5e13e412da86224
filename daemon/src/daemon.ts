import { setImmediate as nextTurn } from "node:timers/promises";
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { file_google_rpc_error_details } from "@weft/sdk/gen/google/rpc/error_details_pb.js";
import type { Logger } from "pino";
import { addDefaults, ConfigError, type DaemonConfig, parseHostPort, redactRedisUrl } from "./config.js";
import { logThrottle } from "./observability/log-throttle.js";
import { createLogger } from "./observability/logger.js";
import {
  MetricsRegistry,
  type MetricsServer,
  registerProcessMetrics,
  startMetricsServer,
} from "./observability/metrics.js";
import { loadPolicy } from "./policy.js";
import { type RedisServer, startRedisServer } from "./redis/private-redis.js";
import type { RedisClient } from "./redis/redis.js";
import { closeRedis, createRedisClient, waitForReady } from "./redis/redis.js";
import { RedisCheck } from "./redis/redis-check.js";
import { RedisMonitor } from "./redis/redis-monitor.js";
import { parseRedisTarget } from "./redis/redis-target.js";
import { CallGuard, shuttingDownError } from "./server/call-guard.js";
import { directGrpcHandler } from "./server/grpc-server-stream.js";
import { type HealthReporter, HealthState, registerHealthService } from "./server/health.js";
import { ReflectionCatalog, reflectionServices, registerReflectionServices } from "./server/reflection.js";
import { type ApiServer, startApiServer, type TlsFiles } from "./server/server.js";
import type { ServiceContext, WeftServices, WeftServicesFactory } from "./services/context.js";
import { createWeftServices } from "./services/index.js";

/** Where weftd keeps the data of the redis-server it starts when no Redis URL is given. */
export const PRIVATE_REDIS_DIR = ".weft/redis";

/** How long startup waits for Redis before serving anyway (NOT_SERVING until Redis is back). */
const REDIS_STARTUP_WAIT_MS = 5000;

/** How long connections get to close once calls are over, before they are destroyed. */
const CONNECTION_CLOSE_MS = 1000;

/** Options of {@link startDaemon} beyond the configuration. */
export interface StartDaemonOptions {
  /**
   * The logger to use.
   * @defaultValue a new logger at `config.logLevel`
   */
  logger?: Logger;
  /**
   * Builds the Weft services.
   * @defaultValue `createWeftServices` from services/index.ts
   */
  services?: WeftServicesFactory;
  /**
   * Called when weftd finds, once Redis answers (it did not at startup), that the Redis URL does not
   * match what it names (a Cluster node without the Cluster option, …): weftd must not go on.
   * @defaultValue log the reason as fatal and shut the daemon down
   */
  onFatal?: (err: ConfigError) => void;
}

/** A running weftd. */
export interface DaemonHandle {
  /** The configuration in use, defaults applied. */
  readonly config: DaemonConfig;
  /** "host:port" of the API port. */
  readonly address: string;
  /** Port of the API (the real one when the configuration said 0). */
  readonly port: number;
  /** "host:port" of the /metrics and /healthz port. */
  readonly metricsAddress: string;
  /** Port of /metrics and /healthz. */
  readonly metricsPort: number;
  /** The Redis in use: the configured one or the private redis-server's. */
  readonly redisUrl: string;
  /** The health state the daemon reports. */
  readonly health: HealthReporter;
  /** Aborted when shutdown begins. */
  readonly shuttingDown: AbortSignal;
  /**
   * Shuts down gracefully: NOT_SERVING at once, new calls UNAVAILABLE, open streams ended with
   * UNAVAILABLE, in-flight unary calls given `shutdownGraceMs`, then services, Redis and the private
   * redis-server closed. Safe to call more than once.
   */
  close(): Promise<void>;
  /** Reads the TLS certificate files again (what SIGHUP does). */
  reloadTls(): void;
}

/** Procedures answered even while shutting down, so that probes see NOT_SERVING. */
const SERVED_DURING_SHUTDOWN = new Set(["/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/List"]);

/** Starts weftd in this process: RedisClient, the Weft services, the API port and the metrics port. */
export async function startDaemon(
  partial: Partial<DaemonConfig> = {},
  options: StartDaemonOptions = {},
): Promise<DaemonHandle> {
  const config = addDefaults(partial);
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  const cleanup: (() => Promise<void>)[] = [];
  // The daemon's close(), once it exists, for a Redis check that fails after startup.
  let closeHandle: (() => Promise<void>) | undefined;
  const undo = async () => {
    for (const step of cleanup.reverse()) {
      await step().catch((err: unknown) => logger.error({ err }, "cleanup after failed start"));
    }
  };
  try {
    let privateRedis: RedisServer | undefined;
    let redisUrl =
      config.redisUrl ??
      (config.configFile === undefined ? undefined : loadPolicy(config.configFile).redisUrl);
    if (redisUrl === undefined) {
      privateRedis = await startRedisServer({
        dir: PRIVATE_REDIS_DIR,
        persistence: "aof",
        detached: true,
        logger: logger.child({ component: "redis-server" }),
      });
      cleanup.push(() => (privateRedis as RedisServer).stop());
      redisUrl = privateRedis.url;
      logger.info(
        { redis: redisUrl, dir: privateRedis.dir },
        "started a private redis-server (no --redis-url given)",
      );
    }
    const redisTarget = redactRedisUrl(redisUrl);
    // A Redis that is not what the URL says (a Cluster node given as one server, …) is refused now;
    // one that does not answer yet is checked once it does.
    let check: RedisCheck | undefined;
    if (privateRedis === undefined) {
      check = new RedisCheck(parseRedisTarget(redisUrl), redisTarget, logger, (err) => {
        if (options.onFatal !== undefined) options.onFatal(err);
        else {
          logger.fatal(err.message);
          void closeHandle?.();
        }
      });
      cleanup.push(async () => check?.stop());
      await check.first();
    }
    // On a Cluster the slot table is read again every 5 s besides after errors: the sharded
    // subscriber follows it.
    const redis = createRedisClient(redisUrl, `weftd:${config.prefix}`, { slotsRefreshIntervalMs: 5000 });
    cleanup.push(() => closeRedis(redis));
    const health = new HealthState();
    const monitor = new RedisMonitor(redis, redisTarget, health, logger);
    cleanup.push(async () => monitor.stop());
    await waitForReady(redis, REDIS_STARTUP_WAIT_MS);

    const shutdown = new AbortController();
    const metrics = new MetricsRegistry();
    const ctx: ServiceContext = {
      config,
      logger,
      redisUrl,
      redis,
      health,
      shuttingDown: shutdown.signal,
      metrics,
    };
    const services = await (options.services ?? createWeftServices)(ctx);
    cleanup.push(() => services.close());

    const guard = new CallGuard(shutdown.signal, logger, SERVED_DURING_SHUTDOWN);
    registerMetrics(metrics, health, monitor, guard);
    const cutOff = new AbortController();
    const listen = parseHostPort(config.addr);
    const api = await startApiServer({
      host: listen.host,
      port: listen.port,
      readMaxBytes: config.maxRequestBytes,
      routes: (router) => registerRoutes(router, health, services),
      interceptors: [guard.interceptor, ...(services.interceptors ?? [])],
      direct: directGrpcHandler({
        unary: services.direct ?? [],
        streams: services.directStreams ?? [],
        readMaxBytes: config.maxRequestBytes,
        guard,
        streamLimit: services.streamLimit,
      }),
      shutdownSignal: cutOff.signal,
      logger,
      tls: tlsFilesOf(config),
      keepalive: {
        intervalMs: config.keepaliveIntervalMs,
        timeoutMs: config.keepaliveTimeoutMs,
        loop: monitor.loop,
      },
    });
    cleanup.push(() => api.close(CONNECTION_CLOSE_MS));
    const metricsListen = parseHostPort(config.metricsAddr);
    const metricsServer = await startMetricsServer(
      metricsListen.host,
      metricsListen.port,
      metrics,
      () => health.serving,
    );

    logger.info(
      {
        address: api.address,
        port: api.port,
        metricsAddress: metricsServer.address,
        metricsPort: metricsServer.port,
        redis: redisTarget,
        prefix: config.prefix,
      },
      "weftd listening",
    );

    let closing: Promise<void> | undefined;
    const close = () => {
      check?.stop();
      closing ??= shutDown({
        config,
        logger,
        health,
        shutdown,
        cutOff,
        guard,
        api,
        services,
        metricsServer,
        monitor,
        redis,
        privateRedis,
      });
      return closing;
    };
    closeHandle = close;
    return {
      config,
      address: api.address,
      port: api.port,
      metricsAddress: metricsServer.address,
      metricsPort: metricsServer.port,
      redisUrl,
      health,
      shuttingDown: shutdown.signal,
      close,
      reloadTls: () => api.reloadTls(),
    };
  } catch (err) {
    await undo();
    throw err;
  }
}

function tlsFilesOf(config: DaemonConfig): TlsFiles | undefined {
  if (config.tlsCert === undefined && config.tlsKey === undefined) {
    if (config.tlsClientCa !== undefined)
      throw new ConfigError("--tls-client-ca needs --tls-cert and --tls-key");
    return undefined;
  }
  if (config.tlsCert === undefined || config.tlsKey === undefined) {
    throw new ConfigError("TLS needs both --tls-cert and --tls-key");
  }
  return { certFile: config.tlsCert, keyFile: config.tlsKey, clientCaFile: config.tlsClientCa };
}

function registerRoutes(router: ConnectRouter, health: HealthState, services: WeftServices): void {
  registerHealthService(router, health);
  const before = router.handlers.length;
  services.register(router);
  for (const handler of router.handlers.slice(before)) health.addService(handler.service.typeName);
  const served = new Set<DescService>(router.handlers.map((h) => h.service));
  for (const service of reflectionServices) served.add(service);
  // The details of weftd's errors (google.rpc.BadRequest), so that grpcurl can print them.
  registerReflectionServices(router, new ReflectionCatalog([...served], [file_google_rpc_error_details]));
}

function registerMetrics(
  metrics: MetricsRegistry,
  health: HealthState,
  monitor: RedisMonitor,
  guard: CallGuard,
): void {
  registerProcessMetrics(metrics);
  metrics.register("weft_up", "gauge", "1 while weftd is SERVING, 0 otherwise.", () =>
    health.serving ? 1 : 0,
  );
  metrics.register("weft_redis_up", "gauge", "1 while Redis answers, 0 otherwise.", () =>
    monitor.reachable ? 1 : 0,
  );
  metrics.register(
    "weft_event_loop_delay_seconds",
    "gauge",
    "How late weftd's event loop ran its callbacks since the previous scrape: median, 99th percentile, largest.",
    () => monitor.loop.takeDelays(),
  );
  metrics.register(
    "weft_event_loop_blocked_seconds_total",
    "counter",
    "Time weftd's event loop was blocked (busy CPU, GC, process stopped); Redis PINGs are judged without it.",
    () => monitor.loop.blockedMs() / 1000,
  );
  metrics.register(
    "weft_rpc_unary_in_flight",
    "gauge",
    "Unary calls being served.",
    () => guard.unaryInFlight,
  );
  metrics.register(
    "weft_rpc_streams_in_flight",
    "gauge",
    "Streaming calls open.",
    () => guard.streamsInFlight,
  );
}

interface Running {
  config: DaemonConfig;
  logger: Logger;
  health: HealthState;
  shutdown: AbortController;
  cutOff: AbortController;
  guard: CallGuard;
  api: ApiServer;
  services: WeftServices;
  metricsServer: MetricsServer;
  monitor: RedisMonitor;
  redis: RedisClient;
  privateRedis: RedisServer | undefined;
}

async function shutDown(r: Running): Promise<void> {
  const { logger } = r;
  const started = performance.now();
  logger.info(
    {
      graceMs: r.config.shutdownGraceMs,
      unaryInFlight: r.guard.unaryInFlight,
      streams: r.guard.streamsInFlight,
    },
    "weftd shutting down",
  );
  r.health.beginShutdown();
  // Let health watchers send NOT_SERVING before their streams are ended.
  await nextTurn();
  r.shutdown.abort(shuttingDownError());
  if (!(await r.guard.idle(r.config.shutdownGraceMs))) {
    logger.warn(
      { unaryInFlight: r.guard.unaryInFlight },
      "shutdown grace elapsed: cutting off the calls still running",
    );
  }
  r.cutOff.abort(shuttingDownError());
  await r.guard.idle(CONNECTION_CLOSE_MS, true);

  const failures: unknown[] = [];
  const step = async (name: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      failures.push(err);
      logger.error({ err }, `shutdown: ${name} failed`);
    }
  };
  await step("closing the API server", () => r.api.close(CONNECTION_CLOSE_MS));
  await step("closing the Weft services", () => r.services.close());
  await step("closing the metrics server", () => r.metricsServer.close());
  r.monitor.stop();
  await step("closing Redis", () => closeRedis(r.redis));
  // Counts of errors still repeating, rather than nothing.
  logThrottle(logger).flush();
  if (r.privateRedis !== undefined)
    await step("stopping the private redis-server", () => (r.privateRedis as RedisServer).stop());
  logger.info({ ms: Math.round(performance.now() - started) }, "weftd stopped");
  if (failures.length > 0) throw new AggregateError(failures, "weftd did not shut down cleanly");
}
