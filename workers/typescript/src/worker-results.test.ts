import { toJson } from "@bufbuild/protobuf";
import { durationMs, type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, test } from "vitest";
import { NonRetryableError } from "./errors.js";
import { toProtoValue } from "./json.js";
import type { TaskContext } from "./task-context.js";
import { deferred } from "./testing/async.js";
import { startHarness } from "./testing/harness.js";

function json(value: Value | undefined): unknown {
  return value === undefined ? undefined : toJson(ValueSchema, value);
}

describe("handler results", () => {
  test("an output is reported exactly, and the handler sees the assignment", async () => {
    const output = { url: "s3://b/k.png", sizes: [64, 128.5], meta: { ok: true, note: null } };
    const called = deferred<{ input: unknown; ctx: TaskContext }>();
    const h = await startHarness({
      handlers: {
        resize: async (input, ctx) => {
          called.resolve({ input, ctx });
          return output;
        },
      },
    });
    const assignment = h.fake.enqueue({
      handler: "resize",
      queue: h.queue,
      workflow: "thumbnails",
      workflowVersion: 4,
      taskId: "resize",
      attempt: 2,
      maxAttempts: 5,
      input: toProtoValue({ width: 64 }),
      runInput: toProtoValue({ key: "k.png" }),
      parentOutputs: { fetch: toProtoValue({ bytes: 10 }) },
    });

    const completion = await h.fake.waitFor("the completion", () => h.fake.completions[0]);
    expect(completion.leaseId).toBe(assignment.leaseId);
    expect(json(completion.output)).toEqual(output);
    expect(h.fake.failures).toEqual([]);

    const { input, ctx } = await called.promise;
    expect(input).toEqual({ width: 64 });
    expect(ctx).toMatchObject({
      runId: assignment.runId,
      taskId: "resize",
      workflow: "thumbnails",
      workflowVersion: 4,
      handler: "resize",
      queue: h.queue,
      attempt: 2,
      maxAttempts: 5,
      runInput: { key: "k.png" },
      parentOutputs: { fetch: { bytes: 10 } },
      attemptDeadline: undefined,
    });
    expect(ctx.signal.aborted).toBe(false);

    const poll = h.fake.polls[0];
    expect(poll).toMatchObject({ queue: h.queue, workerId: "test-worker", handlers: ["resize"] });
    expect(poll?.wait && durationMs(poll.wait)).toBe(20_000);
  });

  test("a handler returning nothing completes with JSON null", async () => {
    const h = await startHarness({ handlers: { noop: async () => {} } });
    h.fake.enqueue({ handler: "noop" });
    const completion = await h.fake.waitFor("the completion", () => h.fake.completions[0]);
    expect(completion.output?.kind.case).toBe("nullValue");
  });

  test("a thrown error fails the attempt with its name, message and stack; retryable unset", async () => {
    const thrown = new RangeError("width must be positive");
    const h = await startHarness({
      handlers: {
        resize: () => {
          throw thrown;
        },
      },
    });
    const assignment = h.fake.enqueue({ handler: "resize" });
    const failure = await h.fake.waitFor("FailTask", () => h.fake.failures[0]);
    expect(failure.leaseId).toBe(assignment.leaseId);
    expect(failure.error).toMatchObject({
      type: "RangeError",
      message: "width must be positive",
      details: thrown.stack,
    });
    expect(failure.retryable).toBeUndefined();
    expect(h.fake.completions).toEqual([]);
  });

  test("an error's `type` property is the reported type", async () => {
    const h = await startHarness({
      handlers: {
        fetch: async () => Promise.reject(Object.assign(new Error("slow down"), { type: "Throttled" })),
      },
    });
    h.fake.enqueue({ handler: "fetch" });
    const failure = await h.fake.waitFor("FailTask", () => h.fake.failures[0]);
    expect(failure.error).toMatchObject({ type: "Throttled", message: "slow down" });
    expect(failure.retryable).toBeUndefined();
  });

  test("a NonRetryableError fails the task with retryable=false", async () => {
    class InvalidImage extends NonRetryableError {}
    const h = await startHarness({
      handlers: {
        plain: async () => {
          throw new NonRetryableError("bad input");
        },
        typed: async () => {
          throw new NonRetryableError("no such bucket", { type: "BucketMissing" });
        },
        subclass: async () => {
          throw new InvalidImage("not a PNG");
        },
      },
    });
    h.fake.enqueue({ handler: "plain" });
    h.fake.enqueue({ handler: "typed" });
    h.fake.enqueue({ handler: "subclass" });
    await h.fake.waitFor("three FailTask calls", () => h.fake.failures.length === 3);
    expect(h.fake.failures.map((f) => [f.error?.type, f.error?.message, f.retryable])).toEqual([
      ["NonRetryableError", "bad input", false],
      ["BucketMissing", "no such bucket", false],
      ["InvalidImage", "not a PNG", false],
    ]);
  });

  test("an output that is not JSON fails the task with OutputNotSerializable, not retryable", async () => {
    const h = await startHarness({ handlers: { big: async () => ({ n: 10n }) as never } });
    h.fake.enqueue({ handler: "big" });
    const failure = await h.fake.waitFor("FailTask", () => h.fake.failures[0]);
    expect(failure.error?.type).toBe("OutputNotSerializable");
    expect(failure.error?.message).toMatch(/^the handler's output is not JSON-serialisable: /);
    expect(failure.retryable).toBe(false);
  });

  test("an assignment for a handler the worker lacks fails with HandlerNotFound, not retryable", async () => {
    const h = await startHarness({ handlers: { resize: async () => 1 } });
    h.fake.enqueue({ handler: "crop" });
    const failure = await h.fake.waitFor("FailTask", () => h.fake.failures[0]);
    expect(failure.error).toMatchObject({
      type: "HandlerNotFound",
      message: 'worker test-worker has no handler "crop" (it has: resize)',
    });
    expect(failure.retryable).toBe(false);
  });
});
