import { authInterceptor, streamLimitInterceptor, tokenCheck } from "./auth.js";
import { ConfigError } from "./config.js";
import { loadPolicy } from "./policy.js";
import type { ServiceContext, WeftServices } from "./service-context.js";
import { openWeftServices } from "./weft-services.js";

/** Whether weftd refuses to start with no token and no --insecure (switched on with every spawner). */
const REFUSE_WITHOUT_TOKENS = true;

/** The Weft services weftd serves: the workflow engine behind both APIs. */
export async function createWeftServices(ctx: ServiceContext): Promise<WeftServices> {
  const { config } = ctx;
  const policy = loadPolicy(config.configFile);
  if (policy.tokens.length === 0 && !config.insecure && REFUSE_WITHOUT_TOKENS) {
    throw new ConfigError(
      "no tokens are configured: list them under auth.tokens in the --config file (see README, Security), " +
        "or pass --insecure to run without authentication on a development machine",
    );
  }
  if (config.insecure) ctx.logger.warn("running with --insecure: every call is accepted without a token");
  const services = await openWeftServices({
    redisUrl: ctx.redisUrl,
    redis: ctx.redis,
    logger: ctx.logger,
    shuttingDown: ctx.shuttingDown,
    options: {
      prefix: config.prefix,
      runRetentionMs: config.runRetentionMs,
      pollWaitCapMs: config.pollWaitCapMs,
      maxTasksPerWorkflow: config.maxTasksPerWorkflow,
      maxPayloadBytes: config.maxPayloadBytes,
      maxResponseBytes: config.maxResponseBytes,
      defaultHeartbeatTimeoutMs: config.defaultHeartbeatTimeoutMs,
      stalledIntervalMs: config.stalledIntervalMs,
      maxWatchersPerReplica: config.maxWatchersPerReplica,
      maxOpenQueues: config.maxOpenQueues,
      reconcileAfterMs: config.reconcileAfterMs,
    },
    policy,
  });
  const stats = services.engine.dispatchStats;
  ctx.metrics.register(
    "weft_jobs_fetched_total",
    "counter",
    "Jobs this replica fetched for its polls: by the polls themselves, or by completions while the queue had a backlog.",
    () =>
      new Map([
        ['via="poll"', stats.fetchedForPolls],
        ['via="completion"', stats.fetchedByCompletions],
      ]),
  );
  ctx.metrics.register(
    "weft_task_queues_open",
    "gauge",
    "Task queues with a BullMQ worker open on this replica (one blocking Redis connection each).",
    () => services.engine.queues.workerCount,
  );
  ctx.metrics.register(
    "weft_held_jobs_returned_total",
    "counter",
    "Jobs fetched by completions that no poll of this replica took in time, put back in their queue.",
    () => stats.heldReturned,
  );
  const checkToken =
    policy.tokens.length > 0 && !config.insecure
      ? tokenCheck(policy.tokens, ctx.logger, policy.publicServices)
      : undefined;
  return {
    register: (router) => services.register(router),
    close: () => services.close(),
    interceptors:
      checkToken === undefined
        ? []
        : [authInterceptor(checkToken), streamLimitInterceptor(config.maxStreamsPerClient)],
    // Plain gRPC unary calls skip Connect; they pass the same token check.
    direct: services.unaryMethods(checkToken),
  };
}
