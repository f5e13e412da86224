import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { checkQueue, principalKey } from "../auth.js";
import type { Engine } from "../engine/engine.js";
import { durationMs, jsonOf, RequestCheck } from "./request-checks.js";

/** Most assignments one PollTask may ask for. */
const MAX_TASKS_PER_POLL = 256;
/** Most completions in one CompleteTasks call. */
const MAX_COMPLETIONS_PER_CALL = 1000;

/** weft.v1.WorkerService on top of the engine. */
export function workerService(engine: Engine, shutdown: AbortSignal): ServiceImpl<typeof WorkerService> {
  return {
    async pollTask(req, ctx) {
      const waitMs = durationMs(req.wait);
      const check = new RequestCheck()
        .name(req.queue, "queue")
        .require(req.workerId.length <= 256, "worker_id", "must be at most 256 characters")
        .require(!Number.isNaN(waitMs), "wait", "must be a non-negative duration")
        .require(req.handlers.length <= 1000, "handlers", "must list at most 1000 handlers")
        .require(req.maxTasks <= MAX_TASKS_PER_POLL, "max_tasks", `must be at most ${MAX_TASKS_PER_POLL}`);
      req.handlers.forEach((h, i) => {
        check.require(h !== "" && h.length <= 256, `handlers[${i}]`, "must be 1-256 characters");
      });
      check.done();
      if (shutdown.aborted) throw new ConnectError("weftd is shutting down", Code.Unavailable);
      const principal = ctx.values.get(principalKey);
      checkQueue(principal, req.queue);
      const [assignment, ...moreAssignments] = await engine.leases.poll(
        {
          queue: req.queue,
          workerId: req.workerId || "anonymous",
          handlers: req.handlers,
          waitMs,
          maxTasks: req.maxTasks,
          owner: principal?.name,
        },
        ctx.signal,
        shutdown,
      );
      return { assignment, moreAssignments };
    },

    async heartbeat(req, ctx) {
      return engine.leases.heartbeat(req.leaseId, jsonOf(req.progress), ctx.values.get(principalKey));
    },

    async completeTask(req, ctx) {
      return engine.leases.complete(req.leaseId, jsonOf(req.output), ctx.values.get(principalKey));
    },

    async completeTasks(req, ctx) {
      const check = new RequestCheck().require(
        req.completions.length > 0 && req.completions.length <= MAX_COMPLETIONS_PER_CALL,
        "completions",
        `must hold 1 to ${MAX_COMPLETIONS_PER_CALL} completions`,
      );
      const seen = new Set<string>();
      req.completions.forEach((c, i) => {
        check.require(!seen.has(c.leaseId), `completions[${i}].lease_id`, "appears twice");
        seen.add(c.leaseId);
      });
      check.done();
      const principal = ctx.values.get(principalKey);
      const results = await Promise.all(
        req.completions.map(async (c, i) => {
          try {
            const { cancelRequested } = await engine.leases.complete(c.leaseId, jsonOf(c.output), principal);
            return { leaseId: c.leaseId, code: 0, message: "", cancelRequested };
          } catch (err) {
            const error = ConnectError.from(err);
            if (error.code === Code.Internal || error.code === Code.Unknown) throw err;
            // Field paths name the completion: "lease_id" becomes "completions[3].lease_id".
            const message = error.rawMessage.replace(/^(lease_id|output)\b/, `completions[${i}].$1`);
            return { leaseId: c.leaseId, code: error.code, message, cancelRequested: false };
          }
        }),
      );
      return { results };
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
