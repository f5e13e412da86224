import { describe, expect, test } from "vitest";
import { WorkerShutdownError } from "./errors.js";
import { deferred, within } from "./testing/async.js";
import { FakeWorkerService } from "./testing/fake-worker-service.js";
import { startHarness } from "./testing/harness.js";
import { HeldTasks } from "./testing/held-tasks.js";
import { LogCapture } from "./testing/log-capture.js";
import { Worker } from "./worker.js";

describe("worker lifecycle", () => {
  test("against a daemon without Work (an older weftd), it polls with PollTask, and says so once", async () => {
    const tasks = new HeldTasks();
    const h = await startHarness({ concurrency: 2, handlers: { work: tasks.handler } });
    await h.fake.waitFor("the first poll", () => h.fake.activePolls === 1);
    expect(h.fake.requests[0]).toBe("Work");
    expect(h.fake.requests.filter((rpc) => rpc === "Work")).toHaveLength(1);
    expect(
      h.logs.withMessage("the daemon does not implement Work (an older weftd); polling with PollTask"),
    ).toHaveLength(1);
    const { runId } = h.fake.enqueue({ handler: "work" });
    await h.logs.waitForMessage("task started", 1);
    tasks.release(runId);
    await h.fake.waitFor("the completion", () => h.fake.completions.length === 1);
  });

  test("one poll asks for the free slots; up to `concurrency` tasks run at once, none polled while full", async () => {
    const tasks = new HeldTasks();
    const h = await startHarness({ concurrency: 4, handlers: { work: tasks.handler } });
    await h.fake.waitFor("the first poll", () => h.fake.activePolls === 1);
    const runIds = [1, 2, 3, 4, 5, 6].map(() => h.fake.enqueue({ handler: "work" }).runId);

    await h.logs.waitForMessage("task started", 4);
    expect(tasks.started).toEqual(runIds.slice(0, 4));
    expect(h.fake.polls.map((poll) => poll.maxTasks)).toEqual([4]);

    // One slot frees: the next poll asks for one task.
    tasks.release(runIds[0] ?? "");
    await h.logs.waitForMessage("task started", 5);
    expect(tasks.started[4]).toBe(runIds[4]);
    expect(h.fake.polls.map((poll) => poll.maxTasks)).toEqual([4, 1]);

    // Three slots free together: one poll asks for three.
    tasks.release(...runIds.slice(1, 4));
    await h.logs.waitForMessage("task started", 6);
    expect(h.fake.polls.map((poll) => poll.maxTasks).slice(0, 3)).toEqual([4, 1, 3]);
    tasks.release(...runIds.slice(4));

    await h.fake.waitFor("6 completions", () => h.fake.completions.length === 6);
    expect(h.fake.completions.map((c) => c.output?.kind.value).sort()).toEqual([...runIds].sort());
    expect(tasks.maxRunning).toBe(4);
    expect(h.fake.maxActivePolls).toBe(1);
  });

  test("close() stops polling and waits for an in-flight task to finish and report", async () => {
    const started = deferred();
    const release = deferred();
    const h = await startHarness({
      handlers: {
        slow: async () => {
          started.resolve();
          await release.promise;
          return "finished";
        },
      },
    });
    h.fake.enqueue({ handler: "slow" });
    await within(started.promise, "the handler to start");
    await h.fake.waitFor(
      "the task's poll to return",
      () => h.fake.activePolls === 0 && h.fake.polls.length === 1,
    );

    let closed = false;
    const closing = h.worker.close().then(() => {
      closed = true;
    });
    await h.logs.waitForMessage("worker closing");
    expect(closed).toBe(false);
    release.resolve();
    await within(closing, "close() to resolve");
    await within(h.running, "run() to resolve");
    expect(h.fake.completions).toHaveLength(1);
    expect(h.fake.failures).toEqual([]);
    expect(h.fake.polls).toHaveLength(1);
  });

  test("close() aborts an in-flight poll", async () => {
    const h = await startHarness({ handlers: { echo: async () => 1 } });
    await h.fake.waitFor("a poll", () => h.fake.activePolls === 1);
    await within(h.worker.close(), "close() to resolve");
    await h.fake.waitFor("the poll to be cancelled", () => h.fake.activePolls === 0);
    await within(h.running, "run() to resolve");
  });

  test("after the grace period an in-flight task's signal aborts and it is abandoned unreported", async () => {
    const started = deferred();
    const reason = deferred<unknown>();
    const h = await startHarness({
      shutdownGraceMs: 50,
      handlers: {
        stuck: (_input, ctx) =>
          new Promise((resolve) => {
            started.resolve();
            ctx.signal.addEventListener("abort", () => {
              reason.resolve(ctx.signal.reason);
              resolve("too late");
            });
          }),
      },
    });
    h.fake.enqueue({ handler: "stuck" });
    await within(started.promise, "the handler to start");
    await within(h.worker.close(), "close() to resolve after the grace period");
    const why = await within(reason.promise, "the handler's signal to abort");
    expect(why).toBeInstanceOf(WorkerShutdownError);
    expect(
      h.logs.withMessage("task abandoned at shutdown; its lease will expire on the daemon"),
    ).toHaveLength(1);
    expect(h.fake.completions).toEqual([]);
    expect(h.fake.failures).toEqual([]);
  });

  test("close() before run() makes run() return at once; a second run() is refused", async () => {
    const fake = await FakeWorkerService.start();
    try {
      const options = {
        address: fake.address,
        queue: "q",
        handlers: { a: () => 1 },
        logger: new LogCapture().logger,
      };
      const idle = new Worker(options);
      await idle.close();
      await within(idle.run(), "run() of a closed worker to resolve");
      expect(fake.polls).toEqual([]);

      const busy = new Worker(options);
      const running = busy.run();
      await expect(busy.run()).rejects.toThrow("Worker.run() was already called");
      await busy.close();
      await running;
    } finally {
      await fake.stop();
    }
  });

  test("SIGTERM closes a worker with installed signal handlers", async () => {
    const h = await startHarness({ handlers: { echo: async () => 1 } });
    const listenersBefore = process.listenerCount("SIGTERM");
    h.worker.installSignalHandlers();
    expect(process.listenerCount("SIGTERM")).toBe(listenersBefore + 1);
    await h.fake.waitFor("a poll", () => h.fake.activePolls === 1);
    process.emit("SIGTERM", "SIGTERM");
    await within(h.running, "run() to resolve after SIGTERM");
    expect(h.logs.withMessage("signal received; closing the worker")).toHaveLength(1);
    expect(process.listenerCount("SIGTERM")).toBe(listenersBefore);
  });

  test("options are validated", () => {
    const handlers = { a: () => 1 };
    expect(() => new Worker({ queue: "q", handlers })).toThrow(
      "WorkerOptions.address is required when no transport is given",
    );
    expect(() => new Worker({ address: "x:1", queue: "q", handlers: {} })).toThrow(
      "WorkerOptions.handlers must name at least one handler",
    );
    expect(() => new Worker({ address: "x:1", queue: "q", handlers, concurrency: 0 })).toThrow(
      "WorkerOptions.concurrency must be a positive integer, got 0",
    );
  });
});
