import { randomUUID } from "node:crypto";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { createWeftClient } from "@weft/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import { TestFiles } from "./support/journal.js";
import { expectNoRunRunning } from "./support/liveness.js";
import {
  collectEvents,
  describeEvent,
  EventType,
  RunStatus,
  rpcError,
  TaskStatus,
  task,
  type WeftClients,
  weftClients,
} from "./support/weft.js";
import { spawnWorker, type WorkerProcess } from "./support/worker-process.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--reconcile-after", "1s"] });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

/** Fast retries: two attempts 50 ms apart. */
const retry = { maxAttempts: 2, initialBackoff: durationFromMs(50), jitter: 0 };

/** A workflow a → d → b (flaky) → c on a fresh queue, and a worker for it. */
async function setup(
  name: string,
  tasks = chain,
): Promise<{ queue: string; files: TestFiles; worker: WorkerProcess }> {
  const queue = `${name}-${randomUUID().slice(0, 8)}`;
  await c.workflows.submitWorkflow({
    definition: { name: queue, defaultRetry: retry, tasks: tasks(queue) },
  });
  const files = new TestFiles();
  const worker = await spawnWorker({ address: weftd.address, queue, env: files.env });
  return { queue, files, worker };
}

function chain(queue: string) {
  return [
    task("a", [], { queue }),
    task("d", ["a"], { queue }),
    task("b", ["d"], { queue, handler: "flaky" }),
    task("c", ["b"], { queue }),
  ];
}

async function finished(runId: string, status: RunStatus) {
  return waitFor(
    async () => {
      const run = (await c.workflows.getRun({ runId })).run;
      return run?.status === status ? run : undefined;
    },
    { message: `run ${runId} to end ${RunStatus[status]}`, timeoutMs: 30_000 },
  );
}

describe("resume", () => {
  it("lists the failed task, and resumed after the fix runs only what had not succeeded", async () => {
    const { queue, files, worker } = await setup("flip");
    try {
      const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
      await finished(runId, RunStatus.FAILED);

      // The dead-letter view: one entry, the task that failed for good, with its two attempts.
      const { deadLetters } = await c.failures.listDeadLetters({ filter: { workflow: queue } });
      expect(deadLetters.map((d) => [d.id, d.taskId, d.queue, d.handler, d.attempts, d.maxAttempts])).toEqual(
        [[`${runId}/b/0`, "b", queue, "flaky", 2, 2]],
      );
      expect(deadLetters[0]?.error?.type).toBe("Error");
      expect(deadLetters[0]?.error?.message).toBe("the downstream is down (attempt 2)");
      const whole = await c.failures.getDeadLetter({ id: `${runId}/b/0` });
      expect(whole.attemptErrors.map((e) => [e.attempt, e.error?.message])).toEqual([
        [1, "the downstream is down (attempt 1)"],
        [2, "the downstream is down (attempt 2)"],
      ]);
      expect(Object.keys(whole.parentOutputs)).toEqual(["d"]);

      files.raiseFlag();
      const resumed = await c.failures.resumeRun({ runId });
      expect([resumed.resumed, resumed.queuedTasks, resumed.resetTasks]).toEqual([true, ["b"], 2]);
      expect(resumed.run?.status).toBe(RunStatus.RUNNING);
      expect(resumed.run?.resumeCount).toBe(1);
      const run = await finished(runId, RunStatus.SUCCEEDED);
      expect(run.tasks.map((t) => [t.taskId, TaskStatus[t.status], t.attempt])).toEqual([
        ["a", "SUCCEEDED", 1],
        ["d", "SUCCEEDED", 1],
        ["b", "SUCCEEDED", 1],
        ["c", "SUCCEEDED", 1],
      ]);
      // The succeeded tasks' handlers ran once; b ran its two failed attempts and one more.
      expect(files.starts(runId)).toEqual({ a: 1, d: 1, b: 3, c: 1 });
      // The entry left the view.
      expect((await c.failures.listDeadLetters({ filter: { workflow: queue } })).deadLetters).toEqual([]);

      // A watch from the start carries on past the first RUN_FINISHED to the last one.
      const events = (await collectEvents(c, runId)).map(describeEvent);
      expect(events.slice(events.indexOf("RUN_FINISHED FAILED"))).toEqual([
        "RUN_FINISHED FAILED",
        "RUN_RESUMED",
        "TASK_QUEUED b#0",
        "TASK_STARTED b#1",
        "TASK_COMPLETED b#1",
        "TASK_QUEUED c#0",
        "TASK_STARTED c#1",
        "TASK_COMPLETED c#1",
        "RUN_FINISHED SUCCEEDED",
      ]);
      // The SDK's result() waits through it.
      const sdk = createWeftClient({ address: weftd.address });
      try {
        expect(await sdk.result(runId)).toEqual({ c: expect.objectContaining({ task: "c" }) });
      } finally {
        sdk.close();
      }
    } finally {
      await worker.stop();
    }
  }, 60_000);

  it("from a named task runs again that task and its descendants only", async () => {
    // a → b → c (flaky), a → d: resumed from b, b and c run again, a and d do not.
    const { queue, files, worker } = await setup("from", (q) => [
      task("a", [], { queue: q }),
      task("b", ["a"], { queue: q }),
      task("c", ["b"], { queue: q, handler: "flaky" }),
      task("d", ["a"], { queue: q }),
    ]);
    try {
      const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
      await finished(runId, RunStatus.FAILED);
      const before = files.starts(runId);
      expect(before).toMatchObject({ a: 1, b: 1, c: 2 });
      files.raiseFlag();
      const resumed = await c.failures.resumeRun({ runId, fromTask: "b", reason: "redo b" });
      expect([resumed.resumed, resumed.queuedTasks, resumed.resetTasks]).toEqual([true, ["b"], 2]);
      await finished(runId, RunStatus.SUCCEEDED);
      expect(files.starts(runId)).toEqual({ a: 1, b: 2, c: 3, d: before.d ?? 0 });
      const events = await collectEvents(c, runId);
      expect(events.find((e) => e.type === EventType.RUN_RESUMED)?.message).toBe("redo b");
    } finally {
      await worker.stop();
    }
  }, 60_000);

  it("makes one resume of 20 concurrent ones, through two replicas", async () => {
    const { queue, files, worker } = await setup("twenty");
    const other = await spawnWeftd({ redisUrl: redis.url, prefix: weftd.prefix });
    try {
      const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
      await finished(runId, RunStatus.FAILED);
      files.raiseFlag();
      const clients = [c, weftClients(other.address)];
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) => (clients[i % 2] as WeftClients).failures.resumeRun({ runId })),
      );
      expect(answers.filter((a) => a.resumed).length).toBe(1);
      for (const a of answers) expect(a.run?.id).toBe(runId);
      await finished(runId, RunStatus.SUCCEEDED);
      const events = await collectEvents(c, runId);
      expect(events.filter((e) => e.type === EventType.RUN_RESUMED).length).toBe(1);
      expect(files.starts(runId)).toEqual({ a: 1, d: 1, b: 3, c: 1 });
      // Within seconds of the resume, one more without a name for the finish it resumes lost the race.
      expect((await c.failures.resumeRun({ runId })).resumed).toBe(false);
      // Naming the finish it is in now: a succeeded run has nothing to resume.
      const err = await rpcError(c.failures.resumeRun({ runId, resumeCount: 1 }));
      expect([err.code, err.rawMessage]).toEqual([
        Code.FailedPrecondition,
        `run "${runId}" succeeded: there is nothing to resume`,
      ]);
      // The finish the callers named was resumed: naming it again answers resumed = false.
      const again = await c.failures.resumeRun({ runId, resumeCount: 0 });
      expect(again.resumed).toBe(false);
    } finally {
      await worker.stop();
      await other.stop();
    }
  }, 60_000);

  it("resumes a run once per idempotency key, and refuses a running run", async () => {
    const { queue, files, worker } = await setup("idem");
    try {
      const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
      await finished(runId, RunStatus.FAILED);
      // The flag stays down: the resumed run fails again.
      const first = await c.failures.resumeRun({ runId, idempotencyKey: "fix-1" });
      expect(first.resumed).toBe(true);
      // Another key while it runs (it may have failed again already): refused, or a resume of its second failure.
      const other = await c.failures
        .resumeRun({ runId, idempotencyKey: "fix-2" })
        .catch((err: unknown) => err);
      if (other instanceof Error) {
        expect(other.message).toBe(
          `[failed_precondition] run "${runId}" is running: only a run that ended FAILED, CANCELLED or TIMED_OUT can be resumed`,
        );
      }
      await finished(runId, RunStatus.FAILED);
      const count = (await c.workflows.getRun({ runId })).run?.resumeCount ?? 0;
      const repeat = await c.failures.resumeRun({ runId, idempotencyKey: "fix-1" });
      expect([repeat.resumed, repeat.run?.status, repeat.run?.resumeCount]).toEqual([
        false,
        RunStatus.FAILED,
        count,
      ]);
      // The last failure has its own entry, named by the resume count it belongs to.
      const { deadLetters } = await c.failures.listDeadLetters({ filter: { queue } });
      expect(deadLetters.map((d) => d.id)).toEqual([`${runId}/b/${count}`]);
      files.raiseFlag();
      const retried = await c.failures.retryDeadLetter({ id: `${runId}/b/${count}` });
      expect(retried.resumed).toBe(true);
      await finished(runId, RunStatus.SUCCEEDED);
      // The same entry retried again: already done.
      const twice = await c.failures.retryDeadLetter({ id: `${runId}/b/${count}` });
      expect(twice.resumed).toBe(false);
      expect(files.starts(runId)).toEqual({ a: 1, d: 1, b: 2 * (count + 1) + 1, c: 1 });
    } finally {
      await worker.stop();
    }
  }, 60_000);

  it("resumes a timed-out run: the task runs again and the run succeeds", async () => {
    const queue = `timedout-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({
      definition: {
        name: queue,
        runTimeout: durationFromMs(1000),
        tasks: [task("a", [], { queue, handler: "gated" }), task("b", ["a"], { queue })],
      },
    });
    const files = new TestFiles();
    const worker = await spawnWorker({ address: weftd.address, queue, env: files.env });
    try {
      const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
      const timedOut = await finished(runId, RunStatus.TIMED_OUT);
      expect(timedOut.tasks.map((t) => TaskStatus[t.status])).toEqual(["CANCELLED", "CANCELLED"]);
      files.openGate();
      const resumed = await c.failures.resumeRun({ runId, reason: "gate opened" });
      expect([resumed.resumed, resumed.queuedTasks, resumed.resetTasks]).toEqual([true, ["a"], 2]);
      await finished(runId, RunStatus.SUCCEEDED);
      expect(files.starts(runId)).toEqual({ a: 2, b: 1 });
      await expectNoRunRunning(c, queue, 10_000);
    } finally {
      await worker.stop();
    }
  }, 60_000);

  it("resumes a cancelled run; the lease of an attempt before it changes nothing", async () => {
    const queue = `cancelled-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({ definition: { name: queue, tasks: [task("a", [], { queue })] } });
    const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
    const old = (await c.workers.pollTask({ queue, workerId: "old", wait: { seconds: 5n } })).assignment;
    expect(old?.taskId).toBe("a");
    await c.workflows.cancel({ runId, reason: "operator" });
    const resumed = await c.failures.resumeRun({ runId });
    expect([resumed.resumed, resumed.queuedTasks]).toEqual([true, ["a"]]);
    // The worker of the cancelled attempt reports late: nothing is recorded.
    const late = await rpcError(c.workers.completeTask({ leaseId: old?.leaseId ?? "" }));
    expect(late.code).toBe(Code.NotFound);
    expect((await c.workflows.getRun({ runId })).run?.tasks[0]?.status).toBe(TaskStatus.QUEUED);
    const fresh = (await c.workers.pollTask({ queue, workerId: "new", wait: { seconds: 5n } })).assignment;
    expect([fresh?.taskId, fresh?.attempt]).toEqual(["a", 1]);
    await c.workers.completeTask({ leaseId: fresh?.leaseId ?? "" });
    await finished(runId, RunStatus.SUCCEEDED);
    await expectNoRunRunning(c, queue, 10_000);
  }, 60_000);
});
