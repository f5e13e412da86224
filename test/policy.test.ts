import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import {
  collectEvents,
  describeEvent,
  EventType,
  pollTask,
  RunStatus,
  rpcError,
  TaskStatus,
  task,
  value,
  type WeftClients,
  weftClients,
} from "./support/weft.js";
import { spawnWorker } from "./support/worker-process.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;
let dir: string;

const POLICY = `
retry:
  maxAttempts: 3
  initialBackoff: 100ms
rateLimitKeys:
  - pattern: "tenant-slow"
    max: 2
    per: 1s
`;

beforeAll(async () => {
  redis = await startTestRedis();
  dir = mkdtempSync(join(tmpdir(), "weft-policy-"));
  writeFileSync(join(dir, "policy.yaml"), POLICY);
  weftd = await spawnWeftd({
    redisUrl: redis.url,
    args: ["--stalled-interval", "200ms", "--config", join(dir, "policy.yaml")],
  });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

function names(label: string) {
  const id = randomUUID().slice(0, 8);
  return { queue: `${label}-${id}`, workflow: `${label}-${id}` };
}

const ms = (t: { seconds: bigint; nanos: number } | undefined) =>
  Number(t?.seconds ?? 0n) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);

/** The start times of a run's tasks' last attempts, in order. */
function startTimes(run: { tasks: { startTime?: { seconds: bigint; nanos: number } }[] }): number[] {
  return run.tasks.map((t) => ms(t.startTime)).sort((a, b) => a - b);
}

async function finished(client: WeftClients, runId: string, timeoutMs = 20_000) {
  return waitFor(
    async () => {
      const run = (await client.workflows.getRun({ runId })).run;
      return run !== undefined && run.status !== RunStatus.RUNNING ? run : undefined;
    },
    { message: `run ${runId} to finish`, timeoutMs },
  );
}

describe("retries with backoff", () => {
  it("spaces attempts by min(initial × coefficient^(n-1), max) less up to the jitter, and caps the delay", async () => {
    const { queue, workflow } = names("backoff");
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        tasks: [
          task("a", [], {
            queue,
            retry: {
              maxAttempts: 5,
              initialBackoff: { nanos: 200_000_000 },
              backoffCoefficient: 2,
              maxBackoff: { nanos: 500_000_000 },
              jitter: 0.2,
            },
          }),
        ],
      },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    for (let attempt = 1; attempt <= 4; attempt++) {
      const t = await pollTask(c, queue);
      expect(t.attempt).toBe(attempt);
      const res = await c.workers.failTask({
        leaseId: t.leaseId,
        error: { type: "Flaky", message: `try ${attempt}` },
      });
      expect(res.willRetry).toBe(true);
    }
    const last = await pollTask(c, queue);
    expect(last.attempt).toBe(5);
    await c.workers.completeTask({ leaseId: last.leaseId, output: value("finally") });

    const events = await collectEvents(c, runId);
    const starts = events.filter((e) => e.type === EventType.TASK_STARTED).map((e) => ms(e.time));
    const retries = events.filter((e) => e.type === EventType.TASK_RETRYING);
    expect(retries.map((e) => [e.attempt, e.error?.type, e.error?.message])).toEqual([
      [1, "Flaky", "try 1"],
      [2, "Flaky", "try 2"],
      [3, "Flaky", "try 3"],
      [4, "Flaky", "try 4"],
    ]);
    const bases = [200, 400, 500, 500];
    bases.forEach((base, i) => {
      const planned = ms(retries[i]?.nextAttemptTime) - ms(retries[i]?.time);
      expect(planned).toBeGreaterThanOrEqual(Math.ceil(base * 0.8));
      expect(planned).toBeLessThanOrEqual(base);
      const gap = (starts[i + 1] ?? 0) - (starts[i] ?? 0);
      expect(gap).toBeGreaterThanOrEqual(Math.ceil(base * 0.8));
      expect(gap).toBeLessThanOrEqual(base + 250);
    });
    const run = (await c.workflows.getRun({ runId })).run;
    expect([run?.tasks[0]?.attempt, run?.tasks[0]?.error?.type]).toEqual([5, "Flaky"]);
  });

  it("fails at once on an error type the policy lists as non-retryable", async () => {
    const { queue, workflow } = names("nonretry");
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        tasks: [task("a", [], { queue, retry: { maxAttempts: 5, nonRetryableErrorTypes: ["BadInput"] } })],
      },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    const t = await pollTask(c, queue);
    const res = await c.workers.failTask({ leaseId: t.leaseId, error: { type: "BadInput", message: "no" } });
    expect(res.willRetry).toBe(false);
    const run = (await c.workflows.getRun({ runId })).run;
    expect([RunStatus[run?.status ?? 0], run?.error]).toEqual(["FAILED", 'task "a" failed: BadInput: no']);
  });

  it("takes the daemon default policy from the configuration file", async () => {
    const { queue, workflow } = names("defaults");
    await c.workflows.submitWorkflow({ definition: { name: workflow, tasks: [task("a", [], { queue })] } });
    await c.workflows.trigger({ workflow });
    const t = await pollTask(c, queue);
    expect(t.maxAttempts).toBe(3);
    const res = await c.workers.failTask({ leaseId: t.leaseId, error: { type: "X" } });
    const delay = ms(res.nextAttemptTime) - Date.now();
    expect(delay).toBeLessThanOrEqual(100);
  });
});

describe("timeouts", () => {
  it("ends an attempt at its start-to-close timeout even while it heartbeats", async () => {
    const { queue, workflow } = names("s2c");
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        tasks: [
          task("a", [], {
            queue,
            retry: { maxAttempts: 1 },
            timeouts: { startToClose: { nanos: 800_000_000 } },
          }),
        ],
      },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    const t = await pollTask(c, queue);
    expect(ms(t.attemptDeadline) - ms(t.leaseDeadline)).toBeLessThanOrEqual(0);
    const err = await waitFor(
      async () => {
        try {
          await c.workers.heartbeat({ leaseId: t.leaseId });
          return undefined;
        } catch (e) {
          return e as Error;
        }
      },
      { message: "heartbeats to be refused once start-to-close expired", timeoutMs: 5000, intervalMs: 100 },
    );
    expect(err.message).toMatch(/the start-to-close timeout expired|the lease expired/);
    const run = await finished(c, runId);
    expect(RunStatus[run.status]).toBe("FAILED");
    expect([TaskStatus[run.tasks[0]?.status ?? 0], run.tasks[0]?.error?.type]).toEqual([
      "FAILED",
      "StartToCloseTimeout",
    ]);
  });

  it("fails a task no worker starts within its schedule-to-start timeout", async () => {
    const { queue, workflow } = names("s2s");
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        tasks: [
          task("a", [], { queue, timeouts: { scheduleToStart: { nanos: 300_000_000 } } }),
          task("b", ["a"], { queue }),
        ],
      },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    const run = await finished(c, runId);
    expect(RunStatus[run.status]).toBe("FAILED");
    expect(run.tasks.map((t) => [t.taskId, TaskStatus[t.status], t.error?.type ?? ""])).toEqual([
      ["a", "FAILED", "ScheduleToStartTimeout"],
      ["b", "SKIPPED", ""],
    ]);
    expect((await c.workers.pollTask({ queue, wait: { nanos: 300_000_000 } })).assignment).toBeUndefined();
  });

  it("times a run out and cancels what is left", async () => {
    const { queue, workflow } = names("runtimeout");
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        runTimeout: { nanos: 500_000_000 },
        tasks: [task("a", [], { queue }), task("b", [], { queue })],
      },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    const a = await pollTask(c, queue);
    const run = await finished(c, runId);
    expect([RunStatus[run.status], run.error]).toEqual(["TIMED_OUT", "the run timeout of 500 ms expired"]);
    expect(run.tasks.map((t) => TaskStatus[t.status])).toEqual(["CANCELLED", "CANCELLED"]);
    expect((await c.workers.heartbeat({ leaseId: a.leaseId })).cancelRequested).toBe(true);
    const events = (await collectEvents(c, runId)).map(describeEvent);
    expect(events[events.length - 1]).toBe("RUN_FINISHED TIMED_OUT");
  });

  it("moves the task of a worker that stops heartbeating (SIGSTOP) to another worker", async () => {
    const { queue, workflow } = names("sigstop");
    const first = await spawnWorker({ address: weftd.address, queue, workerId: "frozen" });
    let second: Awaited<ReturnType<typeof spawnWorker>> | undefined;
    try {
      await c.workflows.submitWorkflow({
        definition: {
          name: workflow,
          tasks: [task("a", [], { queue, handler: "stuckOnce", timeouts: { heartbeat: { seconds: 1n } } })],
        },
      });
      const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
      await waitFor(async () => (await c.workflows.getRun({ runId })).run?.tasks[0]?.workerId === "frozen", {
        message: "the first worker to take the task",
      });
      process.kill(first.pid, "SIGSTOP");
      second = await spawnWorker({ address: weftd.address, queue, workerId: "alive" });
      const run = await finished(c, runId);
      expect(RunStatus[run.status]).toBe("SUCCEEDED");
      // The frozen worker's open polls get no task: it answers no PING. Attempt 2 runs on the live one.
      expect([run.tasks[0]?.attempt, run.tasks[0]?.workerId, run.tasks[0]?.error?.type]).toEqual([
        2,
        "alive",
        "HeartbeatTimeout",
      ]);
    } finally {
      process.kill(first.pid, "SIGCONT");
      await first.kill();
      await second?.stop();
    }
  });
});

describe("rate-limit keys", () => {
  it("holds back the tasks of a limited key without slowing another key, and says why", async () => {
    const { queue, workflow } = names("keys");
    const tasks = Array.from({ length: 6 }, (_, i) =>
      task(`t${i}`, [], { queue, rateLimitKey: "tenant-{{input.tenant}}" }),
    );
    await c.workflows.submitWorkflow({ definition: { name: workflow, tasks } });
    const slow = (await c.workflows.trigger({ workflow, input: value({ tenant: "slow" }) })).run?.id ?? "";
    const fast = (await c.workflows.trigger({ workflow, input: value({ tenant: "fast" }) })).run?.id ?? "";
    const starts = new Map<string, number[]>([
      [slow, []],
      [fast, []],
    ]);
    const t0 = Date.now();
    const poller = async () => {
      for (;;) {
        const res = await c.workers.pollTask({ queue, wait: { seconds: 4n } });
        const t = res.assignment;
        if (t === undefined) return;
        starts.get(t.runId)?.push(Date.now() - t0);
        await c.workers.completeTask({ leaseId: t.leaseId });
      }
    };
    const pollers = Array.from({ length: 4 }, poller);
    const waiting = await waitFor(
      async () => (await c.workflows.getRun({ runId: slow })).run?.tasks.find((t) => t.waitingReason !== ""),
      { message: "a slow task to show why it waits" },
    );
    expect(waiting.waitingReason).toBe('rate limit key "tenant-slow" allows 2 per 1000 ms');
    const [slowRun, fastRun] = await Promise.all([finished(c, slow), finished(c, fast)]);
    await Promise.all(pollers);
    expect(starts.get(fast)?.length).toBe(6);
    expect(starts.get(slow)?.length).toBe(6);
    // The attempts' start times as weftd recorded them (a slot's time), not when the test's polls
    // happened to receive them: a loaded machine delays delivery, not the limiter's spacing.
    const fastStarts = startTimes(fastRun);
    const slowStarts = startTimes(slowRun);
    expect(Math.max(...fastStarts) - ms(fastRun.createTime)).toBeLessThan(1000);
    for (let i = 2; i < slowStarts.length; i++) {
      expect((slowStarts[i] ?? 0) - (slowStarts[i - 2] ?? 0)).toBeGreaterThanOrEqual(1000);
    }
    const events = await collectEvents(c, slow);
    expect(events.some((e) => e.type === EventType.TASK_WAITING)).toBe(true);
    expect(slowRun.tasks.every((t) => t.attempt === 1)).toBe(true);
  });
});

describe("AdminService", () => {
  it("shows queues with their counts and limits, and answers bad input with the right code", async () => {
    const { queue, workflow } = names("admin");
    await c.workflows.submitWorkflow({
      definition: { name: workflow, tasks: [task("a", [], { queue }), task("b", [], { queue })] },
    });
    await c.workflows.trigger({ workflow });
    const got = (await c.admin.getQueue({ name: queue })).queue;
    expect([got?.name, got?.waiting, got?.active, got?.paused, got?.concurrency]).toEqual([
      queue,
      2n,
      0n,
      false,
      0,
    ]);
    const listed = (await c.admin.listQueues({ pageSize: 1000 })).queues.map((q) => q.name);
    expect(listed).toContain(queue);

    const updated = (
      await c.admin.updateQueue({
        name: queue,
        rateLimit: { max: 3, duration: { seconds: 2n } },
        concurrency: 4,
        paused: true,
      })
    ).queue;
    expect([
      updated?.rateLimit?.max,
      ms(updated?.rateLimit?.duration),
      updated?.concurrency,
      updated?.paused,
    ]).toEqual([3, 2000, 4, true]);
    expect((await c.workers.pollTask({ queue, wait: { nanos: 500_000_000 } })).assignment).toBeUndefined();
    const resumed = (
      await c.admin.updateQueue({ name: queue, paused: false, clearRateLimit: true, concurrency: 0 })
    ).queue;
    expect([resumed?.rateLimit, resumed?.concurrency, resumed?.paused]).toEqual([undefined, 0, false]);
    const t = await pollTask(c, queue);
    expect(t.taskId).toMatch(/^[ab]$/);

    const unknown = await rpcError(c.admin.getQueue({ name: "never-seen" }));
    expect([unknown.code, unknown.rawMessage]).toEqual([Code.NotFound, 'queue "never-seen" not found']);
    const bad = await rpcError(
      c.admin.updateQueue({ name: queue, rateLimit: { max: 0, duration: { seconds: 1n } } }),
    );
    expect([bad.code, bad.rawMessage]).toEqual([Code.InvalidArgument, "rate_limit.max: must be at least 1"]);
    const badName = await rpcError(c.admin.getQueue({ name: "a:b" }));
    expect(badName.code).toBe(Code.InvalidArgument);
  });

  it("changes a queue's rate limit at runtime on every replica", async () => {
    const other = await spawnWeftd({ redisUrl: redis.url, prefix: weftd.prefix });
    try {
      const c2 = weftClients(other.address);
      const { queue, workflow } = names("runtime-limit");
      await c.workflows.submitWorkflow({
        definition: {
          name: workflow,
          tasks: Array.from({ length: 6 }, (_, i) => task(`t${i}`, [], { queue })),
        },
      });
      await c.admin.updateQueue({ name: queue, rateLimit: { max: 2, duration: { seconds: 1n } } });
      const limited = await c.workflows.trigger({ workflow });
      // Polled through the other replica: the limit set through the first one holds there.
      for (let i = 0; i < 6; i++) {
        const t = await pollTask(c2, queue, "w", 5n);
        await c2.workers.completeTask({ leaseId: t.leaseId });
      }
      const starts = startTimes(await finished(c, limited.run?.id ?? ""));
      for (let i = 2; i < starts.length; i++) {
        expect((starts[i] ?? 0) - (starts[i - 2] ?? 0)).toBeGreaterThanOrEqual(1000);
      }
      // Cleared through the other replica: the first one stops limiting within a second.
      await c2.admin.updateQueue({ name: queue, clearRateLimit: true });
      const fresh = await c.workflows.trigger({ workflow });
      for (let i = 0; i < 6; i++) {
        const t = await pollTask(c, queue, "w", 5n);
        await c.workers.completeTask({ leaseId: t.leaseId });
      }
      const run = await finished(c, fresh.run?.id ?? "");
      expect(run.status).toBe(RunStatus.SUCCEEDED);
      // Under the old limit of 2 per second, six starts would span at least two seconds.
      const freshStarts = startTimes(run);
      expect((freshStarts.at(-1) ?? 0) - (freshStarts[0] ?? 0)).toBeLessThan(1000);
    } finally {
      await other.stop();
    }
  });
});
