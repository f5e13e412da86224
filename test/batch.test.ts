import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import {
  json,
  RunStatus,
  rpcError,
  wideRun as submitWideRun,
  TaskStatus,
  value,
  type WeftClients,
  weftClients,
} from "./support/weft.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

function wideRun(n: number) {
  return submitWideRun(c, "batch", n);
}

async function runStatus(runId: string) {
  const { run } = await c.workflows.getRun({ runId });
  return run;
}

describe("PollTask with max_tasks", () => {
  it("returns up to max_tasks assignments, each under its own lease, and no task twice", async () => {
    const { queue, runId } = await wideRun(10);
    const first = await c.workers.pollTask({ queue, workerId: "w", wait: { seconds: 10n }, maxTasks: 4 });
    const batch1 = [first.assignment, ...first.moreAssignments];
    expect(batch1).toHaveLength(4);
    const second = await c.workers.pollTask({ queue, workerId: "w", wait: { seconds: 10n }, maxTasks: 100 });
    const batch2 = [second.assignment, ...second.moreAssignments];
    // The second poll takes the six left and does not wait for more.
    expect(batch2).toHaveLength(6);
    const all = [...batch1, ...batch2].map((a) => a ?? expect.fail("an assignment is missing"));
    expect(new Set(all.map((a) => a.taskId)).size).toBe(10);
    expect(new Set(all.map((a) => a.leaseId)).size).toBe(10);
    for (const a of all) {
      expect([a.runId, a.attempt, json(a.runInput)]).toEqual([runId, 1, { n: 10 }]);
    }
    const { run } = await c.workflows.getRun({ runId });
    expect(run?.tasks.every((t) => t.status === TaskStatus.RUNNING)).toBe(true);
    const empty = await c.workers.pollTask({ queue, workerId: "w", maxTasks: 5 });
    expect([empty.assignment, empty.moreAssignments]).toEqual([undefined, []]);
  });

  it("answers one assignment when max_tasks is zero or one", async () => {
    const { queue } = await wideRun(3);
    for (const maxTasks of [0, 1]) {
      const res = await c.workers.pollTask({ queue, workerId: "w", wait: { seconds: 10n }, maxTasks });
      expect(res.assignment?.taskId).toMatch(/^t\d$/);
      expect(res.moreAssignments).toEqual([]);
    }
  });

  it("rejects max_tasks over 256, naming the field", async () => {
    const err = await rpcError(c.workers.pollTask({ queue: "q", maxTasks: 257 }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe("max_tasks: must be at most 256");
  });
});

describe("CompleteTasks", () => {
  it("records every completion of the batch and finishes the run", async () => {
    const { queue, runId } = await wideRun(5);
    const res = await c.workers.pollTask({ queue, workerId: "w", wait: { seconds: 10n }, maxTasks: 5 });
    const leases = [res.assignment, ...res.moreAssignments].map((a) => a ?? expect.fail("missing"));
    expect(leases).toHaveLength(5);
    const { results } = await c.workers.completeTasks({
      completions: leases.map((a) => ({ leaseId: a.leaseId, output: value(`${a.taskId}-out`) })),
    });
    expect(results.map((r) => [r.leaseId, r.code, r.message, r.cancelRequested])).toEqual(
      leases.map((a) => [a.leaseId, 0, "", false]),
    );
    const run = await waitFor(
      async () => {
        const r = await runStatus(runId);
        return r?.status === RunStatus.SUCCEEDED ? r : undefined;
      },
      { message: "the run to succeed after CompleteTasks" },
    );
    expect(Object.fromEntries(run.tasks.map((t) => [t.taskId, json(t.output)]))).toEqual(
      Object.fromEntries(leases.map((a) => [a.taskId, `${a.taskId}-out`])),
    );
  });

  it("answers each completion on its own: a stale or unknown lease does not stop the others", async () => {
    const { queue, runId } = await wideRun(3);
    const res = await c.workers.pollTask({ queue, workerId: "w", wait: { seconds: 10n }, maxTasks: 3 });
    const [a, b, f] = [res.assignment, ...res.moreAssignments];
    if (a === undefined || b === undefined || f === undefined) expect.fail("three assignments expected");
    await c.workers.completeTask({ leaseId: a.leaseId, output: value(1) });
    // A failed attempt's lease is spent; the task is retried under a new one.
    await c.workers.failTask({ leaseId: f.leaseId, error: { type: "Flaky", message: "try again" } });
    const { results } = await c.workers.completeTasks({
      completions: [
        { leaseId: a.leaseId, output: value("again") },
        { leaseId: "not-a-lease" },
        { leaseId: f.leaseId, output: value("late") },
        { leaseId: b.leaseId, output: value(2) },
      ],
    });
    expect(results.map((r) => r.code)).toEqual([0, Code.InvalidArgument, Code.FailedPrecondition, 0]);
    expect(results[1]?.message).toBe("completions[1].lease_id: is not a lease id issued by PollTask");
    expect(results[2]?.message).toContain(`lease "${f.leaseId}" is no longer valid`);
    const retried = await c.workers.pollTask({ queue, workerId: "w", wait: { seconds: 10n } });
    expect([retried.assignment?.taskId, retried.assignment?.attempt]).toEqual([f.taskId, 2]);
    await c.workers.completeTasks({
      completions: [{ leaseId: retried.assignment?.leaseId, output: value(3) }],
    });
    const run = await waitFor(
      async () => {
        const r = await runStatus(runId);
        return r?.status === RunStatus.SUCCEEDED ? r : undefined;
      },
      { message: "the run to succeed" },
    );
    // A completion repeated with the same lease is answered OK and changes nothing.
    const outputs = Object.fromEntries(run.tasks.map((t) => [t.taskId, json(t.output)]));
    expect(outputs).toEqual({ [a.taskId]: 1, [b.taskId]: 2, [f.taskId]: 3 });
  });

  it("rejects an empty batch, too many completions and a lease given twice", async () => {
    const empty = await rpcError(c.workers.completeTasks({ completions: [] }));
    expect([empty.code, empty.rawMessage]).toEqual([
      Code.InvalidArgument,
      "completions: must hold 1 to 1000 completions",
    ]);
    const many = await rpcError(
      c.workers.completeTasks({
        completions: Array.from({ length: 1001 }, (_, i) => ({ leaseId: `l${i}` })),
      }),
    );
    expect([many.code, many.rawMessage]).toEqual([
      Code.InvalidArgument,
      "completions: must hold 1 to 1000 completions",
    ]);
    const twice = await rpcError(
      c.workers.completeTasks({ completions: [{ leaseId: "x" }, { leaseId: "x" }] }),
    );
    expect([twice.code, twice.rawMessage]).toEqual([
      Code.InvalidArgument,
      "completions[1].lease_id: appears twice",
    ]);
  });
});
