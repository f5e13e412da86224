import { Code } from "@connectrpc/connect";
import { describe, expect, test } from "vitest";
import { startHarness } from "./testing/harness.js";
import { levels } from "./testing/log-capture.js";

describe("an unavailable daemon", () => {
  test("is retried with backoff, logged once when down and once when back, and work resumes", async () => {
    const h = await startHarness({ handlers: { echo: async (input) => input } });
    await h.fake.waitFor("the first poll", () => h.fake.activePolls === 1);

    await h.fake.stop();
    await h.logs.waitForMessage("daemon unavailable; retrying with backoff");
    await h.logs.waitForMessage("daemon still unavailable", 3);
    await h.fake.restart();
    h.fake.enqueue({ handler: "echo", input: { kind: { case: "stringValue", value: "hi" } } });

    const completion = await h.fake.waitFor("CompleteTask after the outage", () => h.fake.completions[0]);
    expect(completion.output?.kind).toEqual({ case: "stringValue", value: "hi" });
    await h.logs.waitForMessage("daemon reachable again");
    const down = h.logs.withMessage("daemon unavailable; retrying with backoff");
    expect(down).toHaveLength(1);
    expect(down[0]).toMatchObject({
      level: levels.warn,
      rpc: "PollTask",
      queue: h.queue,
      workerId: "test-worker",
    });
    expect(h.logs.withMessage("daemon reachable again")).toHaveLength(1);
    expect(h.logs.lines.filter((line) => line.level >= levels.error)).toEqual([]);
  });

  test("UNAVAILABLE answers to PollTask are retried like a lost connection", async () => {
    const h = await startHarness({ handlers: { echo: async () => 1 } });
    h.fake.failNext("PollTask", Code.Unavailable, 3);
    h.fake.enqueue({ handler: "echo" });
    await h.fake.waitFor("CompleteTask", () => h.fake.completions[0]);
    expect(h.logs.withMessage("daemon unavailable; retrying with backoff")).toHaveLength(1);
    expect(h.logs.withMessage("daemon reachable again")).toHaveLength(1);
  });

  test("a non-transient poll error is logged once and backed off until it clears", async () => {
    const h = await startHarness({ handlers: { echo: async () => 1 } });
    h.fake.failNext("PollTask", Code.PermissionDenied, 3);
    h.fake.enqueue({ handler: "echo" });
    await h.fake.waitFor("CompleteTask", () => h.fake.completions[0]);
    const errors = h.logs.lines.filter((line) => line.level >= levels.error);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      msg: "PollTask failed; retrying with backoff",
      rpc: "PollTask",
      code: "PermissionDenied",
      error: "injected PermissionDenied",
    });
  });

  test("CompleteTasks is retried on UNAVAILABLE until it is recorded", async () => {
    const h = await startHarness({ handlers: { echo: async () => "out" } });
    h.fake.failNext("CompleteTasks", Code.Unavailable, 2);
    const assignment = h.fake.enqueue({ handler: "echo" });
    const completion = await h.fake.waitFor("the completion", () => h.fake.completions[0]);
    expect(completion.leaseId).toBe(assignment.leaseId);
    expect(h.fake.completions).toHaveLength(1);
    expect(h.fake.requests.filter((rpc) => rpc.startsWith("Complete"))).toEqual([
      "CompleteTasks",
      "CompleteTasks",
      "CompleteTasks",
    ]);
    expect(h.fake.completeTasksCalls).toEqual([[assignment.leaseId]]);
  });

  test("FailTask is retried on UNAVAILABLE until it is recorded", async () => {
    const h = await startHarness({
      handlers: {
        boom: async () => {
          throw new Error("boom");
        },
      },
    });
    h.fake.failNext("FailTask", Code.Unavailable, 2);
    h.fake.enqueue({ handler: "boom" });
    const failure = await h.fake.waitFor("FailTask", () => h.fake.failures[0]);
    expect(failure.error?.message).toBe("boom");
    expect(h.fake.failures).toHaveLength(1);
  });

  test("FAILED_PRECONDITION for a completion logs 'lease lost' and the worker moves on", async () => {
    const h = await startHarness({ handlers: { echo: async () => "out" } });
    const first = h.fake.enqueue({ handler: "echo" });
    h.fake.failCompletion(first.leaseId, Code.FailedPrecondition);
    const [lost] = await h.logs.waitForMessage("lease lost; the result was not recorded");
    expect(lost).toMatchObject({
      level: levels.warn,
      rpc: "CompleteTasks",
      code: "FailedPrecondition",
      runId: first.runId,
    });

    const next = h.fake.enqueue({ handler: "echo" });
    const completion = await h.fake.waitFor("the next task's completion", () => h.fake.completions[0]);
    expect(completion.leaseId).toBe(next.leaseId);
    expect(h.fake.completeTasksCalls).toEqual([[first.leaseId], [next.leaseId]]);
  });
});
