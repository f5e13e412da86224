import { setMaxListeners } from "node:events";
import type { ConnectRouter } from "@connectrpc/connect";
import { AdminService } from "@weft/sdk/gen/weft/v1/admin_service_pb.js";
import { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { Engine, type EngineOptions } from "./engine/engine.js";
import type { Policy } from "./engine/policy.js";
import { adminService } from "./services/admin-service.js";
import { workerService } from "./services/worker-service.js";
import { workflowService } from "./services/workflow-service.js";

/** What the Weft services need from the daemon. */
export interface WeftServicesDeps {
  redisUrl: string;
  redis: Redis;
  logger: Logger;
  /** Aborts when the daemon starts shutting down. */
  shuttingDown: AbortSignal;
  options: EngineOptions;
  policy: Policy;
}

/** The Weft services of one replica, ready to register on a router. */
export interface WeftServicesHandle {
  engine: Engine;
  register(router: ConnectRouter): void;
  close(): Promise<void>;
}

/** Opens the engine and returns the Weft services built on it. */
export async function openWeftServices(deps: WeftServicesDeps): Promise<WeftServicesHandle> {
  const engine = await Engine.open(deps.redisUrl, deps.redis, deps.options, deps.policy, deps.logger);
  // Every open poll and watch listens for shutdown.
  setMaxListeners(0, deps.shuttingDown);
  return {
    engine,
    register(router) {
      router.service(WorkflowService, workflowService(engine, deps.shuttingDown));
      router.service(WorkerService, workerService(engine, deps.shuttingDown));
      router.service(AdminService, adminService(engine));
    },
    close: () => engine.close(),
  };
}
