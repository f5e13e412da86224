import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { AdminService, Queue } from "@weft/sdk/gen/weft/v1/admin_service_pb.js";
import { CircuitState } from "@weft/sdk/gen/weft/v1/circuit_breaker_pb.js";
import {
  type CircuitSettings,
  circuitBreakerProblems,
  resolveCircuitBreaker,
} from "../engine/definitions/index.js";
import type { Engine } from "../engine/engine.js";
import { circuitBreakerOf } from "./circuit-view.js";
import { durationMs, pageSizeOf, RequestCheck } from "./request-checks.js";

/** A queue with its circuit breaker settings and circuits. */
async function withCircuits(engine: Engine, queue: Queue): Promise<Queue> {
  const settings = await engine.circuits.queueSettings(queue.name);
  queue.circuitBreaker = settings === undefined ? undefined : circuitBreakerOf(settings);
  queue.circuits = await engine.circuits.describe(queue.name);
  return queue;
}

/** weft.v1.AdminService: task queues, their counts and limits, their circuit breakers. */
export function adminService(engine: Engine): ServiceImpl<typeof AdminService> {
  return {
    async getQueue(req) {
      new RequestCheck().name(req.name, "name").done();
      return { queue: await withCircuits(engine, await engine.admin.get(req.name)) };
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
      await Promise.all(queues.map((q) => withCircuits(engine, q)));
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
      let circuit: CircuitSettings | null | undefined;
      if (req.circuitBreaker !== undefined) {
        for (const v of circuitBreakerProblems("circuit_breaker", req.circuitBreaker))
          check.require(false, v.field, v.description);
        check.require(
          !req.clearCircuitBreaker,
          "clear_circuit_breaker",
          "cannot be set together with circuit_breaker",
        );
        circuit = resolveCircuitBreaker(req.circuitBreaker);
      } else if (req.clearCircuitBreaker) {
        circuit = null;
      }
      check.done();
      if (
        (await engine.redis.zscore(engine.keys.queueIndex(), req.name)) === null &&
        req.rateLimit === undefined &&
        req.circuitBreaker === undefined
      ) {
        // Limits may be set ahead of the first task; anything else needs a queue that exists.
        if (req.concurrency === undefined && req.paused === undefined && !req.clearRateLimit) {
          throw new ConnectError(`queue "${req.name}" not found`, Code.NotFound);
        }
      }
      if (circuit !== undefined) await engine.circuits.setSettings(req.name, circuit);
      const queue = await engine.admin.update(req.name, {
        rateLimit,
        concurrency: req.concurrency,
        paused: req.paused,
      });
      engine.logger.info({ queue: req.name }, "queue updated");
      return { queue: await withCircuits(engine, queue) };
    },

    async setCircuitState(req) {
      const check = new RequestCheck().name(req.queue, "queue");
      if (req.handler !== "") check.name(req.handler, "handler");
      check.require(
        req.state === CircuitState.OPEN || req.state === CircuitState.CLOSED,
        "state",
        "must be CIRCUIT_STATE_OPEN or CIRCUIT_STATE_CLOSED",
      );
      const openFor = durationMs(req.openFor);
      if (req.openFor !== undefined) {
        check
          .require(req.state === CircuitState.OPEN, "open_for", "is only for state CIRCUIT_STATE_OPEN")
          .require(!Number.isNaN(openFor) && openFor >= 1, "open_for", "must be at least 1ms");
      }
      check.done();
      // NOT_FOUND unless weftd has seen the queue.
      await engine.admin.get(req.queue);
      const open = req.state === CircuitState.OPEN;
      await engine.circuits.setState(req.queue, req.handler, open, open ? openFor : 0);
      engine.logger.info(
        { queue: req.queue, handler: req.handler, state: open ? "open" : "closed", openForMs: openFor },
        "circuit breaker set by hand",
      );
      return { queue: await withCircuits(engine, await engine.admin.get(req.queue)) };
    },
  };
}
