import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { CircuitState } from "@weft/sdk/gen/weft/v1/circuit_breaker_pb.js";
import { WorkflowDefinitionSchema, WorkflowSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type RedisServer, startRedisServer } from "../../redis/private-redis.js";
import { compileWorkflow, DEFAULT_RETRY_POLICY, type LoadedWorkflow } from "../definitions/index.js";
import { TaskQueues } from "../dispatch/index.js";
import { Keys } from "../shared/index.js";
import { Circuits, countsForCircuit } from "./circuits.js";

let server: RedisServer;
let redis: Redis;
let queues: TaskQueues;
const logger = pino({ level: "silent" });

beforeAll(async () => {
  server = await startRedisServer({ persistence: "none" });
  redis = new Redis(server.url);
});

afterAll(async () => {
  await queues?.close();
  redis?.disconnect();
  await server?.close();
});

/** A workflow of two handlers on one queue, with a default circuit breaker per handler. */
function loaded(queue: string): LoadedWorkflow {
  const definition = create(WorkflowDefinitionSchema, {
    name: "wf",
    tasks: [
      { id: "pay", handler: "charge", queue },
      { id: "mail", handler: "email", queue },
    ],
    defaultCircuitBreaker: {
      perHandler: true,
      failureThreshold: 2,
      window: { seconds: 1n },
      openDuration: { nanos: 500_000_000 },
    },
  });
  const compiled = compileWorkflow(definition, { retry: DEFAULT_RETRY_POLICY, heartbeatTimeoutMs: 30_000 });
  return { workflow: create(WorkflowSchema, { name: "wf", version: 1, definition }), compiled };
}

describe("Circuits", () => {
  it("opens after the threshold within the window, holds one handler, probes once, closes on success", async () => {
    const keys = new Keys(`cb-${randomUUID()}`);
    queues = new TaskQueues(
      redis,
      redis,
      keys,
      { lockDurationMs: 1000, heldLockMs: 1000, stalledIntervalMs: 30_000, drainDelaySeconds: 1 },
      logger,
      () => {},
    );
    const circuits = new Circuits(redis, keys, queues, logger);
    const queue = "payments";
    const wf = loaded(queue);
    const charge = wf.compiled.byId.get("pay");
    const email = wf.compiled.byId.get("mail");
    if (charge === undefined || email === undefined) throw new Error("tasks missing");
    let now = 1_000_000;
    const clock = vi.spyOn(Date, "now").mockImplementation(() => now);
    try {
      // Two failures, but more than the window apart: still closed.
      await circuits.failed(charge, wf, "f1", "Error", true);
      now += 1500;
      await circuits.failed(charge, wf, "f2", "Error", true);
      expect(
        (await circuits.describe(queue)).map((c) => [c.handler, CircuitState[c.state], c.failuresInWindow]),
      ).toEqual([["charge", "CLOSED", 1]]);
      // Non-retryable errors and schedule-to-start timeouts do not count.
      await circuits.failed(charge, wf, "f3", "Error", false);
      await circuits.failed(charge, wf, "f4", "ScheduleToStartTimeout", true);
      expect(countsForCircuit(charge.retry, "HeartbeatTimeout", true)).toBe(true);
      // The second failure within the window opens it.
      now += 100;
      await circuits.failed(charge, wf, "f5", "HeartbeatTimeout", true);
      const [open] = await circuits.describe(queue);
      expect([CircuitState[open?.state ?? 0], open?.openedCount]).toEqual(["OPEN", 1n]);
      expect(await circuits.admit(charge, wf, "job1")).toEqual({
        held: true,
        until: now + 500,
        reason: 'circuit breaker of handler "charge" in queue "payments" is open',
        queueWide: false,
      });
      expect(await circuits.admit(email, wf, "job9")).toEqual({ held: false });
      expect(await circuits.holdReason(queue, "charge")).toBe(
        'circuit breaker of handler "charge" in queue "payments" is open',
      );
      expect(await circuits.holdReason(queue, "email")).toBe("");

      // Half-open: one probe; the same job again is the same probe; another waits.
      now += 500;
      expect(await circuits.admit(charge, wf, "job1")).toEqual({ held: false });
      expect(await circuits.admit(charge, wf, "job1")).toEqual({ held: false });
      expect(await circuits.admit(charge, wf, "job2")).toMatchObject({ held: true, until: now + 500 });
      // The probe fails: open again.
      await circuits.failed(charge, wf, "f6", "Error", true);
      expect((await circuits.describe(queue))[0]?.openedCount).toBe(2n);
      // A success while open changes nothing; once half-open, a probe's success closes it.
      await circuits.succeeded(charge, wf);
      expect(CircuitState[(await circuits.describe(queue))[0]?.state ?? 0]).toBe("OPEN");
      now += 500;
      expect(await circuits.admit(charge, wf, "job2")).toEqual({ held: false });
      await circuits.succeeded(charge, wf);
      const [closed] = await circuits.describe(queue);
      expect([CircuitState[closed?.state ?? 0], closed?.failuresInWindow]).toEqual(["CLOSED", 0]);
      expect(await circuits.admit(charge, wf, "job3")).toEqual({ held: false });
      expect(Object.fromEntries(circuits.transitions)).toEqual({
        'queue="payments",handler="charge",to="open"': 2,
        'queue="payments",handler="charge",to="half_open"': 2,
        'queue="payments",handler="charge",to="closed"': 1,
      });

      // By hand: the whole queue's circuit, open until closed.
      await circuits.setState(queue, "", true, 0);
      expect(await circuits.admit(email, wf, "job4")).toEqual({
        held: true,
        until: undefined,
        reason: 'circuit breaker of queue "payments" is open',
        queueWide: true,
      });
      now += 3_600_000;
      expect((await circuits.admit(email, wf, "job4")).held).toBe(true);
      await circuits.setState(queue, "", false, 0);
      expect(await circuits.admit(email, wf, "job4")).toEqual({ held: false });
      const manual = (await circuits.describe(queue)).find((c) => c.handler === "");
      expect([CircuitState[manual?.state ?? 0], manual?.manual]).toEqual(["CLOSED", true]);
    } finally {
      clock.mockRestore();
    }
  });
});
