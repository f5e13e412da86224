import { loadPolicy } from "./engine/policy.js";
import type { ServiceContext, WeftServices } from "./service-context.js";
import { openWeftServices } from "./weft-services.js";

/** The Weft services weftd serves: the workflow engine behind both APIs. */
export async function createWeftServices(ctx: ServiceContext): Promise<WeftServices> {
  const { config } = ctx;
  return openWeftServices({
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
      defaultHeartbeatTimeoutMs: config.defaultHeartbeatTimeoutMs,
      stalledIntervalMs: config.stalledIntervalMs,
      maxWatchersPerReplica: config.maxWatchersPerReplica,
      reconcileAfterMs: config.reconcileAfterMs,
    },
    policy: loadPolicy(config.configFile),
  });
}
