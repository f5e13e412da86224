import { toJson } from "@bufbuild/protobuf";
import { durationFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, test } from "vitest";
import { LeaseLostError, TaskCancelledError } from "./errors.js";
import { deferred, within } from "./testing/async.js";
import { startHarness } from "./testing/harness.js";

/** Resolves with the signal's reason once it aborts. */
function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve(signal.reason);
    }
    signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
  });
}

describe("heartbeats", () => {
  test("are sent automatically every third of the heartbeat timeout while the handler runs", async () => {
    const h = await startHarness({
      handlers: {
        slow: async () => {
          await h.fake.waitFor("3 automatic heartbeats", () => h.fake.heartbeats.length >= 3);
          return "done";
        },
      },
    });
    const assignment = h.fake.enqueue({ handler: "slow", heartbeatTimeout: durationFromMs(150) });
    await h.fake.waitFor("CompleteTask", () => h.fake.completions[0]);
    expect(new Set(h.fake.heartbeats.map((b) => b.leaseId))).toEqual(new Set([assignment.leaseId]));
  });

  test("ctx.heartbeat(progress) sends the progress at once", async () => {
    const h = await startHarness({
      handlers: {
        work: async (_input, ctx) => {
          await ctx.heartbeat({ done: 5, total: 10 });
          return null;
        },
      },
    });
    const assignment = h.fake.enqueue({ handler: "work", heartbeatTimeout: durationFromMs(60_000) });
    await h.fake.waitFor("CompleteTask", () => h.fake.completions[0]);
    expect(h.fake.heartbeats).toHaveLength(1);
    expect(h.fake.heartbeats[0]?.leaseId).toBe(assignment.leaseId);
    const progress = h.fake.heartbeats[0]?.progress;
    expect(progress && toJson(ValueSchema, progress)).toEqual({ done: 5, total: 10 });
  });

  test("cancel_requested aborts ctx.signal with TaskCancelledError, and the result is still reported", async () => {
    const reason = deferred<unknown>();
    const h = await startHarness({
      handlers: {
        slow: async (_input, ctx) => {
          const why = await within(aborted(ctx.signal), "ctx.signal to abort");
          reason.resolve(why);
          throw why;
        },
      },
    });
    h.fake.onHeartbeat = () => ({ cancelRequested: true });
    const assignment = h.fake.enqueue({ handler: "slow", heartbeatTimeout: durationFromMs(90) });

    const why = await within(reason.promise, "the handler to see the abort");
    expect(why).toBeInstanceOf(TaskCancelledError);
    const failure = await h.fake.waitFor("FailTask", () => h.fake.failures[0]);
    expect(failure.leaseId).toBe(assignment.leaseId);
    expect(failure.error?.type).toBe("TaskCancelledError");
  });

  test("FAILED_PRECONDITION on a heartbeat aborts ctx.signal with LeaseLostError and nothing is reported", async () => {
    const reason = deferred<unknown>();
    const h = await startHarness({
      handlers: {
        slow: async (_input, ctx) => {
          reason.resolve(await within(aborted(ctx.signal), "ctx.signal to abort"));
          return "finished anyway";
        },
      },
    });
    h.fake.onHeartbeat = () => {
      throw new ConnectError("lease expired", Code.FailedPrecondition);
    };
    const assignment = h.fake.enqueue({ handler: "slow", heartbeatTimeout: durationFromMs(90) });

    const why = await within(reason.promise, "the handler to see the abort");
    expect(why).toBeInstanceOf(LeaseLostError);
    expect((why as LeaseLostError).leaseId).toBe(assignment.leaseId);
    // The worker is done with the task once it polls again; by then it must not have reported it.
    await h.fake.waitFor("the poll after the task", () => h.fake.polls.length >= 2);
    expect(h.fake.completions).toEqual([]);
    expect(h.fake.failures).toEqual([]);
    expect(h.logs.withMessage("lease lost; the result of this attempt is not reported")).toHaveLength(1);
  });
});
