/**
 * What CompleteTask, FailTask and Heartbeat answer with a lease whose attempt is over, whatever
 * ended it: each call answers the code and message that say why, and none changes anything.
 */
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { TaskDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import {
  json,
  pollTask,
  RunStatus,
  TaskStatus,
  task,
  value,
  type WeftClients,
  weftClients,
} from "./support/weft.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;
/** Every run of the matrix, with its queue. */
const runs: { runId: string; queue: string; held?: string }[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--stalled-interval", "200ms"] });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

type TaskExtra = Omit<MessageInitShape<typeof TaskDefinitionSchema>, "id" | "$typeName">;
/** One retry: the task waits RETRYING until a poll starts it, whatever the backoff. */
const oneRetry = { maxAttempts: 2, initialBackoff: { nanos: 1_000_000 } };

/** A run of `tasks` (each on the run's own queue) with its first task leased. */
async function leasedRun(tasks: [string, TaskExtra][], runTimeoutMs?: number) {
  const queue = `lease-${randomUUID().slice(0, 8)}`;
  await c.workflows.submitWorkflow({
    definition: {
      name: queue,
      tasks: tasks.map(([id, extra]) => task(id, [], { queue, ...extra })),
      ...(runTimeoutMs === undefined ? {} : { runTimeout: { nanos: runTimeoutMs * 1_000_000 } }),
    },
  });
  const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
  runs.push({ runId, queue });
  const leased = await pollTask(c, queue);
  return { queue, runId, leaseId: leased.leaseId, taskId: leased.taskId };
}

async function taskStatus(runId: string, taskId: string): Promise<string> {
  const { run } = await c.workflows.getRun({ runId });
  return TaskStatus[run?.tasks.find((t) => t.taskId === taskId)?.status ?? 0] ?? "";
}

/** What a call answered: "OK", "OK, cancel_requested", or the code and message of its error. */
async function answer(call: Promise<object>): Promise<string> {
  try {
    return ((await call) as { cancelRequested?: boolean }).cancelRequested === true
      ? "OK, cancel_requested"
      : "OK";
  } catch (err) {
    const e = ConnectError.from(err);
    return `${Code[e.code]}: ${e.rawMessage}`;
  }
}

/** What a run shows of itself: a call that changes nothing leaves it the same. */
async function snapshot(runId: string) {
  const { run } = await c.workflows.getRun({ runId });
  return {
    status: RunStatus[run?.status ?? 0],
    lastSequence: run?.lastSequence,
    output: json(run?.output),
    tasks: run?.tasks.map((t) => [t.taskId, TaskStatus[t.status], t.attempt, json(t.output), t.error?.type]),
  };
}

interface Case {
  after: string;
  /** Leases a task and ends its attempt; returns the lease. */
  end: () => Promise<{ runId: string; leaseId: string }>;
  /** What CompleteTask, FailTask and Heartbeat answer then ({lease} stands for the lease id). */
  complete: string;
  fail: string;
  heartbeat: string;
}

const stale = (why: string) => `FailedPrecondition: lease "{lease}" is no longer valid: ${why}`;

const CASES: Case[] = [
  {
    after: "CompleteTask, the run still running",
    end: async () => {
      const r = await leasedRun([
        ["a", {}],
        ["b", {}],
      ]);
      await c.workers.completeTask({ leaseId: r.leaseId, output: value("first") });
      return r;
    },
    // A repeated completion (its answer lost) is answered as the first was, and records nothing more.
    complete: "OK",
    fail: stale("the task completed"),
    heartbeat: stale("the task completed"),
  },
  {
    after: "CompleteTask that finished the run",
    end: async () => {
      const r = await leasedRun([["a", {}]]);
      await c.workers.completeTask({ leaseId: r.leaseId, output: value("first") });
      return r;
    },
    complete: "OK",
    fail: stale("the task completed"),
    heartbeat: stale("the task completed"),
  },
  {
    after: "a retryable FailTask",
    end: async () => {
      const r = await leasedRun([["a", { retry: oneRetry }]]);
      await c.workers.failTask({ leaseId: r.leaseId, error: { type: "Flaky", message: "try again" } });
      return r;
    },
    complete: stale("the attempt failed; the task will be retried"),
    fail: stale("the attempt failed; the task will be retried"),
    heartbeat: stale("the attempt failed; the task will be retried"),
  },
  {
    after: "a non-retryable FailTask that failed the run",
    end: async () => {
      const r = await leasedRun([["a", { retry: { maxAttempts: 3 } }]]);
      await c.workers.failTask({
        leaseId: r.leaseId,
        error: { type: "Bad", message: "for good" },
        retryable: false,
      });
      return r;
    },
    complete: stale("the task failed"),
    fail: stale("the task failed"),
    heartbeat: stale("the task failed"),
  },
  {
    after: "another attempt started",
    end: async () => {
      const r = await leasedRun([["a", { retry: oneRetry }]]);
      await c.workers.failTask({ leaseId: r.leaseId, error: { type: "Flaky", message: "try again" } });
      const next = await pollTask(c, r.queue);
      (runs.at(-1) as { held?: string }).held = next.leaseId;
      return r;
    },
    complete: stale("the task was reassigned to another lease"),
    fail: stale("the task was reassigned to another lease"),
    heartbeat: stale("the task was reassigned to another lease"),
  },
  {
    after: "Cancel",
    end: async () => {
      const r = await leasedRun([["a", {}]]);
      await c.workflows.cancel({ runId: r.runId, reason: "operator" });
      return r;
    },
    complete: "OK, cancel_requested",
    fail: "OK",
    heartbeat: "OK, cancel_requested",
  },
  {
    after: "the run timeout",
    end: async () => {
      const r = await leasedRun([["a", {}]], 300);
      await waitFor(async () => (await snapshot(r.runId)).status === "TIMED_OUT", {
        message: "the run to time out",
      });
      return r;
    },
    complete: "OK, cancel_requested",
    fail: "OK",
    heartbeat: "OK, cancel_requested",
  },
  {
    after: "the lease expired (another attempt to come)",
    end: async () => {
      const r = await leasedRun([
        ["a", { retry: oneRetry, timeouts: { heartbeat: { nanos: 300_000_000 } } }],
      ]);
      await waitFor(async () => (await taskStatus(r.runId, r.taskId)) === "RETRYING", {
        message: "the lease to expire",
      });
      return r;
    },
    complete: stale("the lease expired; the task will be retried"),
    fail: stale("the lease expired; the task will be retried"),
    heartbeat: stale("the lease expired; the task will be retried"),
  },
  {
    after: "the lease expired on the last attempt",
    end: async () => {
      const r = await leasedRun([
        ["a", { retry: { maxAttempts: 1 }, timeouts: { heartbeat: { nanos: 300_000_000 } } }],
      ]);
      await waitFor(async () => (await taskStatus(r.runId, r.taskId)) === "FAILED", {
        message: "the lease to expire",
      });
      return r;
    },
    complete: stale("the lease expired and the task failed"),
    fail: stale("the lease expired and the task failed"),
    heartbeat: stale("the lease expired and the task failed"),
  },
  {
    after: "the start-to-close timeout on the last attempt",
    end: async () => {
      const r = await leasedRun([
        [
          "a",
          {
            retry: { maxAttempts: 1 },
            timeouts: { startToClose: { nanos: 300_000_000 }, heartbeat: { seconds: 30n } },
          },
        ],
      ]);
      await waitFor(async () => (await taskStatus(r.runId, r.taskId)) === "FAILED", {
        message: "the start-to-close timeout",
      });
      return r;
    },
    complete: stale("the start-to-close timeout expired and the task failed"),
    fail: stale("the start-to-close timeout expired and the task failed"),
    heartbeat: stale("the start-to-close timeout expired and the task failed"),
  },
];

describe("a lease whose attempt is over", () => {
  it.each(CASES)("after $after: each call says why, and changes nothing", async (t) => {
    const { runId, leaseId } = await t.end();
    const before = await snapshot(runId);
    const answers = {
      complete: await answer(c.workers.completeTask({ leaseId, output: value("second") })),
      fail: await answer(c.workers.failTask({ leaseId, error: { type: "Late", message: "late" } })),
      heartbeat: await answer(c.workers.heartbeat({ leaseId, progress: value("late") })),
    };
    const want = (s: string) => s.replace("{lease}", leaseId);
    expect(answers).toEqual({ complete: want(t.complete), fail: want(t.fail), heartbeat: want(t.heartbeat) });
    expect(await snapshot(runId)).toEqual(before);
  });

  it("leaves no run running: a worker takes what is left of each and every run finishes", async () => {
    for (const { runId, queue, held } of runs) {
      if (held !== undefined) await c.workers.completeTask({ leaseId: held, output: value("held") });
      while ((await c.workflows.getRun({ runId })).run?.status === RunStatus.RUNNING) {
        const next = await pollTask(c, queue);
        await c.workers.completeTask({ leaseId: next.leaseId, output: value("retried") });
      }
    }
    const statuses = await Promise.all(
      runs.map(async ({ runId }) => RunStatus[(await c.workflows.getRun({ runId })).run?.status ?? 0]),
    );
    expect(statuses.filter((s) => s === "RUNNING")).toEqual([]);
  });
});
