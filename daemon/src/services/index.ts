import type { DescMethodUnary, DescService } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { AdminService } from "@weft/sdk/gen/weft/v1/admin_service_pb.js";
import { FailureService } from "@weft/sdk/gen/weft/v1/failure_service_pb.js";
import { ScheduleService } from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import {
  authInterceptor,
  StreamLimit,
  streamLimitInterceptor,
  type TokenCheck,
  tokenCheck,
} from "../auth.js";
import { ConfigError, type DaemonConfig } from "../config.js";
import { Engine, type EngineOptions } from "../engine/engine.js";
import type { MetricsRegistry } from "../observability/metrics.js";
import { loadPolicy } from "../policy.js";
import { AbortFanOut } from "../server/abort-fanout.js";
import { directServerStream } from "../server/grpc-server-stream.js";
import { type DirectUnary, directUnary } from "../server/grpc-unary.js";
import { adminService } from "./admin-service.js";
import type { ServiceContext, WeftServices } from "./context.js";
import { registerFailureMetrics } from "./failure-metrics.js";
import { failureService } from "./failure-service.js";
import { registerScheduleMetrics } from "./schedule-metrics.js";
import { scheduleService } from "./schedule-service.js";
import { workerService } from "./worker-service.js";
import { workflowService } from "./workflow-service.js";

type UnaryImpl = (req: unknown, ctx: HandlerContext) => unknown;

/** The Weft services weftd serves: the workflow engine behind both APIs. */
export async function createWeftServices(ctx: ServiceContext): Promise<WeftServices> {
  const { config } = ctx;
  const policy = loadPolicy(config.configFile);
  if (policy.tokens.length === 0 && !config.insecure) {
    throw new ConfigError(
      "no tokens are configured: list them under auth.tokens in the --config file (see README, Security), " +
        "or pass --insecure to run without authentication on a development machine",
    );
  }
  if (config.insecure) ctx.logger.warn("running with --insecure: every call is accepted without a token");
  const engine = await Engine.open(ctx.redisUrl, ctx.redis, engineOptions(config), policy, ctx.logger);
  // Every open poll, Work stream and watch waits for shutdown through one listener.
  const shutdown = new AbortFanOut(ctx.shuttingDown);
  const workflows = workflowService(engine, shutdown);
  const workers = workerService(engine, shutdown);
  const admin = adminService(engine);
  const failures = failureService(engine);
  const schedules = scheduleService(engine);
  registerEngineMetrics(ctx.metrics, engine);
  registerFailureMetrics(ctx.metrics, engine);
  registerScheduleMetrics(ctx.metrics, engine);
  const checkToken =
    policy.tokens.length > 0 && !config.insecure
      ? tokenCheck(policy.tokens, ctx.logger, policy.publicServices)
      : undefined;
  const streamLimit = checkToken === undefined ? undefined : new StreamLimit(config.maxStreamsPerClient);
  return {
    register(router) {
      router.service(WorkflowService, workflows);
      router.service(WorkerService, workers);
      router.service(AdminService, admin);
      router.service(FailureService, failures);
      router.service(ScheduleService, schedules);
    },
    close: () => engine.close(),
    interceptors:
      checkToken === undefined || streamLimit === undefined
        ? []
        : [authInterceptor(checkToken), streamLimitInterceptor(streamLimit)],
    // Plain gRPC unary calls skip Connect; they pass the same token check.
    direct: unaryMethods(
      [
        [WorkflowService, workflows],
        [WorkerService, workers],
        [AdminService, admin],
        [FailureService, failures],
        [ScheduleService, schedules],
      ],
      checkToken,
    ),
    // WatchRun too: a watcher then costs a few kilobytes rather than Connect's pipeline.
    directStreams: [
      directServerStream(
        WorkflowService.method.watchRun,
        (req, handlerCtx) => workflows.watchRun(req, handlerCtx),
        checkToken,
      ),
    ],
    streamLimit,
  };
}

/** The engine's settings from the daemon's configuration. */
function engineOptions(config: DaemonConfig): EngineOptions {
  return {
    prefix: config.prefix,
    runRetentionMs: config.runRetentionMs,
    pollWaitCapMs: config.pollWaitCapMs,
    maxTasksPerWorkflow: config.maxTasksPerWorkflow,
    maxPayloadBytes: config.maxPayloadBytes,
    maxResponseBytes: config.maxResponseBytes,
    defaultHeartbeatTimeoutMs: config.defaultHeartbeatTimeoutMs,
    stalledIntervalMs: config.stalledIntervalMs,
    maxWatchersPerReplica: config.maxWatchersPerReplica,
    maxRunsPerWatch: config.maxRunsPerWatch,
    maxWatchBuffer: config.maxWatchBuffer,
    maxOpenQueues: config.maxOpenQueues,
    reconcileAfterMs: config.reconcileAfterMs,
  };
}

/** The engine's figures on /metrics. */
function registerEngineMetrics(metrics: MetricsRegistry, engine: Engine): void {
  const stats = engine.dispatchStats;
  metrics.register(
    "weft_jobs_fetched_total",
    "counter",
    "Jobs this replica fetched for its polls: by the polls themselves, or by completions while the queue had a backlog.",
    () =>
      new Map([
        ['via="poll"', stats.fetchedForPolls],
        ['via="completion"', stats.fetchedByCompletions],
      ]),
  );
  metrics.register(
    "weft_task_queues_open",
    "gauge",
    "Task queues with a BullMQ worker open on this replica (one blocking Redis connection each).",
    () => engine.queues.workerCount,
  );
  metrics.register(
    "weft_held_jobs_returned_total",
    "counter",
    "Jobs fetched by completions that no poll of this replica took in time, put back in their queue.",
    () => stats.heldReturned,
  );
}

/** Every unary method of the services, with its implementation, for weftd's direct gRPC path. */
function unaryMethods(services: [DescService, object][], checkToken: TokenCheck | undefined): DirectUnary[] {
  return services.flatMap(([service, impl]) =>
    service.methods
      .filter((m): m is DescMethodUnary => m.methodKind === "unary")
      .map((method) => {
        const fn = (impl as Record<string, UnaryImpl>)[method.localName] as UnaryImpl;
        return directUnary(
          method,
          async (req, ctx) => (await fn.call(impl, req, ctx)) as Record<string, unknown>,
          checkToken,
        );
      }),
  );
}
