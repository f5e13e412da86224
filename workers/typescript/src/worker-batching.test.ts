import { Code } from "@connectrpc/connect";
import { describe, expect, test } from "vitest";
import { toProtoValue } from "./json.js";
import { within } from "./testing/async.js";
import { startHarness } from "./testing/harness.js";
import { HeldTasks } from "./testing/held-tasks.js";
import { levels } from "./testing/log-capture.js";

describe("batched completions", () => {
  test("a completion goes out at once; those made while the call is in flight go out together next", async () => {
    const tasks = new HeldTasks();
    const h = await startHarness({ concurrency: 3, handlers: { work: tasks.handler } });
    const [a, b, c] = [1, 2, 3].map(() => h.fake.enqueue({ handler: "work" }));
    if (a === undefined || b === undefined || c === undefined) {
      throw new Error("three assignments were enqueued");
    }
    await h.logs.waitForMessage("task started", 3);

    const answer = h.fake.holdCompleteTasks();
    tasks.release(a.runId);
    await h.fake.waitFor("the first CompleteTasks call", () => h.fake.completeTasksCalls.length === 1);
    tasks.release(b.runId, c.runId);
    await h.logs.waitForMessage("task completed", 3);
    expect(h.fake.completeTasksCalls).toEqual([[a.leaseId]]);

    answer();
    await h.fake.waitFor("the second CompleteTasks call", () => h.fake.completeTasksCalls.length === 2);
    expect(h.fake.completeTasksCalls).toEqual([[a.leaseId], [b.leaseId, c.leaseId]]);
    expect(h.fake.completions.map((completion) => completion.leaseId)).toEqual([
      a.leaseId,
      b.leaseId,
      c.leaseId,
    ]);
    expect(h.fake.requests.filter((rpc) => rpc.startsWith("Complete"))).toEqual([
      "CompleteTasks",
      "CompleteTasks",
    ]);
  });

  test("each completion's error code is handled on its own: lease lost, retried, or given up", async () => {
    const tasks = new HeldTasks();
    const h = await startHarness({ concurrency: 4, handlers: { work: tasks.handler } });
    const [ok, lost, retried, refused] = [1, 2, 3, 4].map(() => h.fake.enqueue({ handler: "work" }));
    if (ok === undefined || lost === undefined || retried === undefined || refused === undefined) {
      throw new Error("four assignments were enqueued");
    }
    h.fake.failCompletion(lost.leaseId, Code.FailedPrecondition);
    h.fake.failCompletion(retried.leaseId, Code.Unavailable);
    h.fake.failCompletion(refused.leaseId, Code.InvalidArgument);
    await h.logs.waitForMessage("task started", 4);

    const answer = h.fake.holdCompleteTasks();
    tasks.release(ok.runId);
    await h.fake.waitFor("the first CompleteTasks call", () => h.fake.completeTasksCalls.length === 1);
    tasks.release(lost.runId, retried.runId, refused.runId);
    await h.logs.waitForMessage("task completed", 4);
    answer();

    await h.fake.waitFor("the retried completion", () => h.fake.completions.length === 2);
    expect(h.fake.completeTasksCalls).toEqual([
      [ok.leaseId],
      [lost.leaseId, retried.leaseId, refused.leaseId],
      [retried.leaseId],
    ]);
    expect(h.fake.completions.map((completion) => completion.leaseId)).toEqual([ok.leaseId, retried.leaseId]);
    expect(h.logs.withMessage("lease lost; the result was not recorded")).toEqual([
      expect.objectContaining({
        level: levels.warn,
        rpc: "CompleteTasks",
        code: "FailedPrecondition",
        error: "injected FailedPrecondition",
        runId: lost.runId,
      }),
    ]);
    expect(h.logs.withMessage("daemon unavailable; retrying with backoff")).toEqual([
      expect.objectContaining({ rpc: "CompleteTasks", code: "Unavailable", error: "injected Unavailable" }),
    ]);
    // Its retry answered, the worker logs that the daemon is back.
    expect(await h.logs.waitForMessage("daemon reachable again")).toHaveLength(1);
    expect(h.logs.lines.filter((line) => line.level >= levels.error)).toEqual([
      expect.objectContaining({
        msg: "CompleteTasks failed; the result was not recorded and the lease will expire on the daemon",
        code: "InvalidArgument",
        error: "injected InvalidArgument",
        attempts: 1,
        runId: refused.runId,
      }),
    ]);
  });

  test("close() waits for a completion queued behind the call in flight, then for its own call", async () => {
    const tasks = new HeldTasks();
    const h = await startHarness({ concurrency: 2, handlers: { work: tasks.handler } });
    const [a, b] = [1, 2].map(() => h.fake.enqueue({ handler: "work" }));
    if (a === undefined || b === undefined) {
      throw new Error("two assignments were enqueued");
    }
    await h.logs.waitForMessage("task started", 2);
    const answer = h.fake.holdCompleteTasks();
    tasks.release(a.runId);
    await h.fake.waitFor("the first CompleteTasks call", () => h.fake.completeTasksCalls.length === 1);
    tasks.release(b.runId);
    await h.logs.waitForMessage("task completed", 2);

    let closed = false;
    const closing = h.worker.close().then(() => {
      closed = true;
    });
    await h.logs.waitForMessage("worker closing");
    expect(closed).toBe(false);
    answer();
    await within(closing, "close() to resolve");
    expect(h.fake.completeTasksCalls).toEqual([[a.leaseId], [b.leaseId]]);
    expect(h.logs.withMessage("worker closing")[0]).toMatchObject({ inFlight: 2 });
  });

  test("against a daemon without CompleteTasks, each task is completed with CompleteTask from then on", async () => {
    const h = await startHarness({ handlers: { echo: async (input) => input } }, { completeTasks: false });
    h.fake.failNext("CompleteTask", Code.Unavailable);
    const first = h.fake.enqueue({ handler: "echo", input: toProtoValue("one") });
    await h.fake.waitFor("the first completion", () => h.fake.completions.length === 1);
    const second = h.fake.enqueue({ handler: "echo", input: toProtoValue("two") });
    await h.fake.waitFor("the second completion", () => h.fake.completions.length === 2);

    expect(h.fake.completions.map((c) => [c.leaseId, c.output?.kind.value])).toEqual([
      [first.leaseId, "one"],
      [second.leaseId, "two"],
    ]);
    // One CompleteTasks (UNIMPLEMENTED), the first task's CompleteTask retried once, the second's.
    expect(h.fake.requests.filter((rpc) => rpc.startsWith("Complete"))).toEqual([
      "CompleteTasks",
      "CompleteTask",
      "CompleteTask",
      "CompleteTask",
    ]);
    expect(
      h.logs.withMessage(
        "the daemon does not implement CompleteTasks (an older weftd); completing tasks one by one",
      ),
    ).toHaveLength(1);
    expect(h.logs.lines.filter((line) => line.level >= levels.error)).toEqual([]);
  });
});
