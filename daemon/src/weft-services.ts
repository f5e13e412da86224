import type { DescMethodUnary, DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { AdminService } from "@weft/sdk/gen/weft/v1/admin_service_pb.js";
import { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { AbortFanOut } from "./abort-fanout.js";
import type { TokenCheck } from "./auth.js";
import { Engine, type EngineOptions } from "./engine/engine.js";
import { type DirectUnary, directUnary } from "./grpc-unary.js";
import type { Policy } from "./policy.js";
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
  /** Every unary method of the services, with its implementation, for weftd's direct gRPC path. */
  unaryMethods(checkToken: TokenCheck | undefined): DirectUnary[];
  close(): Promise<void>;
}

type UnaryImpl = (req: unknown, ctx: HandlerContext) => unknown;

/** Opens the engine and returns the Weft services built on it. */
export async function openWeftServices(deps: WeftServicesDeps): Promise<WeftServicesHandle> {
  const engine = await Engine.open(deps.redisUrl, deps.redis, deps.options, deps.policy, deps.logger);
  // Every open poll, Work stream and watch waits for shutdown through one listener.
  const shutdown = new AbortFanOut(deps.shuttingDown);
  const workflows = workflowService(engine, shutdown);
  const workers = workerService(engine, shutdown);
  const admin = adminService(engine);
  const services: [DescService, object][] = [
    [WorkflowService, workflows],
    [WorkerService, workers],
    [AdminService, admin],
  ];
  return {
    engine,
    register(router) {
      router.service(WorkflowService, workflows);
      router.service(WorkerService, workers);
      router.service(AdminService, admin);
    },
    unaryMethods(checkToken) {
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
    },
    close: () => engine.close(),
  };
}
