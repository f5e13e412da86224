import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { AdminService } from "@weft/sdk/gen/weft/v1/admin_service_pb.js";
import type { Engine } from "../engine/engine.js";
import { durationMs, pageSizeOf, RequestCheck } from "./request-checks.js";

/** weft.v1.AdminService: task queues, their counts and limits. */
export function adminService(engine: Engine): ServiceImpl<typeof AdminService> {
  return {
    async getQueue(req) {
      new RequestCheck().name(req.name, "name").done();
      return { queue: await engine.admin.get(req.name) };
    },

    async listQueues(req) {
      new RequestCheck().pageSize(req.pageSize).done();
      const after = req.pageToken === "" ? "" : Buffer.from(req.pageToken, "base64url").toString();
      new RequestCheck()
        .require(
          after === "" || /^[A-Za-z0-9_.-]{1,128}$/.test(after),
          "page_token",
          "is not a token returned by ListQueues",
        )
        .done();
      const { queues, next } = await engine.admin.list(pageSizeOf(req.pageSize), after);
      return { queues, nextPageToken: next === "" ? "" : Buffer.from(next).toString("base64url") };
    },

    async updateQueue(req) {
      const check = new RequestCheck().name(req.name, "name");
      let rateLimit: { max: number; perMs: number } | null | undefined;
      if (req.rateLimit !== undefined) {
        const perMs = durationMs(req.rateLimit.duration);
        check
          .require(req.rateLimit.max >= 1, "rate_limit.max", "must be at least 1")
          .require(!Number.isNaN(perMs) && perMs >= 1, "rate_limit.duration", "must be at least 1ms")
          .require(!req.clearRateLimit, "clear_rate_limit", "cannot be set together with rate_limit");
        rateLimit = { max: req.rateLimit.max, perMs };
      } else if (req.clearRateLimit) {
        rateLimit = null;
      }
      if (req.concurrency !== undefined)
        check.require(req.concurrency >= 0, "concurrency", "must not be negative");
      check.done();
      if (
        (await engine.redis.zscore(engine.keys.queueIndex(), req.name)) === null &&
        req.rateLimit === undefined
      ) {
        // Limits may be set ahead of the first task; anything else needs a queue that exists.
        if (req.concurrency === undefined && req.paused === undefined && !req.clearRateLimit) {
          throw new ConnectError(`queue "${req.name}" not found`, Code.NotFound);
        }
      }
      const queue = await engine.admin.update(req.name, {
        rateLimit,
        concurrency: req.concurrency,
        paused: req.paused,
      });
      engine.logger.info({ queue: req.name }, "queue updated");
      return { queue };
    },
  };
}
