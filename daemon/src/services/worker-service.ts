import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { checkQueue, principalKey } from "../auth.js";
import type { Engine } from "../engine/engine.js";
import type { AbortFanOut } from "../server/abort-fanout.js";
import { peerOfCall } from "../server/response-stream.js";
import { fitResults } from "./answer-fit.js";
import { durationMs, RequestCheck } from "./request-checks.js";
import {
  checkCompletions,
  checkIdentity,
  completeAll,
  MAX_TASKS_PER_POLL,
  workStream,
} from "./work-stream.js";

/** weft.v1.WorkerService on top of the engine. */
export function workerService(engine: Engine, shutdown: AbortFanOut): ServiceImpl<typeof WorkerService> {
  return {
    async pollTask(req, ctx) {
      const waitMs = durationMs(req.wait);
      checkIdentity(new RequestCheck(), req)
        .require(!Number.isNaN(waitMs), "wait", "must be a non-negative duration")
        .require(req.maxTasks <= MAX_TASKS_PER_POLL, "max_tasks", `must be at most ${MAX_TASKS_PER_POLL}`)
        .done();
      if (shutdown.aborted) throw new ConnectError("weftd is shutting down", Code.Unavailable);
      const principal = ctx.values.get(principalKey);
      checkQueue(principal, req.queue);
      const stopping = shutdown.follow();
      try {
        const [assignment, ...moreAssignments] = await engine.leases.poll(
          {
            queue: req.queue,
            workerId: req.workerId || "anonymous",
            handlers: req.handlers,
            waitMs,
            maxTasks: req.maxTasks,
            owner: principal?.name,
            peer: peerOfCall(ctx),
          },
          ctx.signal,
          stopping.signal,
        );
        return { assignment, moreAssignments };
      } finally {
        stopping.release();
      }
    },

    async heartbeat(req, ctx) {
      const check = new RequestCheck();
      const progress = check.json(req.progress, "progress");
      check.done();
      return engine.leases.heartbeat(req.leaseId, progress, ctx.values.get(principalKey));
    },

    async completeTask(req, ctx) {
      const check = new RequestCheck();
      const output = check.json(req.output, "output");
      check.done();
      return engine.leases.complete(req.leaseId, output, ctx.values.get(principalKey));
    },

    async completeTasks(req, ctx) {
      checkCompletions(new RequestCheck(), req.completions, false).done();
      const results = await completeAll(engine, req.completions, ctx.values.get(principalKey), true);
      return { results: fitResults(results, engine.maxResponseBytes) };
    },

    work(requests, ctx) {
      return workStream(engine, shutdown, requests, ctx);
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
