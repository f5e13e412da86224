import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { checkQueue, principalKey } from "../auth.js";
import type { Engine } from "../engine/engine.js";
import { durationMs, jsonOf, RequestCheck } from "./request-checks.js";

/** weft.v1.WorkerService on top of the engine. */
export function workerService(engine: Engine, shutdown: AbortSignal): ServiceImpl<typeof WorkerService> {
  return {
    async pollTask(req, ctx) {
      const waitMs = durationMs(req.wait);
      const check = new RequestCheck()
        .name(req.queue, "queue")
        .require(req.workerId.length <= 256, "worker_id", "must be at most 256 characters")
        .require(!Number.isNaN(waitMs), "wait", "must be a non-negative duration")
        .require(req.handlers.length <= 1000, "handlers", "must list at most 1000 handlers");
      req.handlers.forEach((h, i) => {
        check.require(h !== "" && h.length <= 256, `handlers[${i}]`, "must be 1-256 characters");
      });
      check.done();
      if (shutdown.aborted) throw new ConnectError("weftd is shutting down", Code.Unavailable);
      const principal = ctx.values.get(principalKey);
      checkQueue(principal, req.queue);
      const assignment = await engine.leases.poll(
        {
          queue: req.queue,
          workerId: req.workerId || "anonymous",
          handlers: req.handlers,
          waitMs,
          owner: principal?.name,
        },
        ctx.signal,
        shutdown,
      );
      return { assignment };
    },

    async heartbeat(req, ctx) {
      return engine.leases.heartbeat(req.leaseId, jsonOf(req.progress), ctx.values.get(principalKey));
    },

    async completeTask(req, ctx) {
      return engine.leases.complete(req.leaseId, jsonOf(req.output), ctx.values.get(principalKey));
    },

    async failTask(req, ctx) {
      const error = req.error;
      new RequestCheck()
        .require((error?.type.length ?? 0) <= 256, "error.type", "must be at most 256 characters")
        .done();
      return engine.leases.fail(
        req.leaseId,
        { type: error?.type || "Error", message: error?.message ?? "", details: error?.details ?? "" },
        req.retryable ?? true,
        ctx.values.get(principalKey),
      );
    },
  };
}
