import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import {
  collectEvents,
  describeEvent,
  json,
  pollTask,
  RunStatus,
  rpcError,
  TaskStatus,
  task,
  value,
  type WeftClients,
  weftClients,
} from "./support/weft.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--stalled-interval", "300ms"] });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

/** A fresh queue and workflow name for one test. */
function names(label: string) {
  const id = randomUUID().slice(0, 8);
  return { queue: `${label}-${id}`, workflow: `${label}-${id}` };
}

describe("a run end to end", () => {
  it("runs a diamond with the run input, static inputs and parent outputs flowing", async () => {
    const { queue, workflow } = names("diamond");
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        tasks: [
          task("a", [], { queue, input: value({ step: "a" }) }),
          task("b", ["a"], { queue }),
          task("c", ["a"], { queue }),
          task("d", ["b", "c"], { queue }),
        ],
      },
    });
    const { run } = await c.workflows.trigger({ workflow, input: value({ n: 3 }) });
    const runId = run?.id ?? "";
    expect(run?.status).toBe(RunStatus.RUNNING);

    const a = await pollTask(c, queue, "w-1");
    expect([a.taskId, a.attempt, a.maxAttempts, a.handler, a.workflow]).toEqual([
      "a",
      1,
      3,
      "echo",
      workflow,
    ]);
    expect(json(a.input)).toEqual({ step: "a" });
    expect(json(a.runInput)).toEqual({ n: 3 });
    expect(a.parentOutputs).toEqual({});
    await c.workers.completeTask({ leaseId: a.leaseId, output: value({ from: "a", n: 3 }) });

    const middle = [await pollTask(c, queue, "w-1"), await pollTask(c, queue, "w-2")];
    expect(middle.map((t) => t.taskId).sort()).toEqual(["b", "c"]);
    for (const t of middle) {
      expect(Object.fromEntries(Object.entries(t.parentOutputs).map(([k, v]) => [k, json(v)]))).toEqual({
        a: { from: "a", n: 3 },
      });
      await c.workers.completeTask({ leaseId: t.leaseId, output: value(`${t.taskId}-done`) });
    }

    const d = await pollTask(c, queue, "w-2");
    expect(d.taskId).toBe("d");
    expect(Object.fromEntries(Object.entries(d.parentOutputs).map(([k, v]) => [k, json(v)]))).toEqual({
      b: "b-done",
      c: "c-done",
    });
    await c.workers.completeTask({ leaseId: d.leaseId, output: value({ total: 42 }) });

    const done = (await c.workflows.getRun({ runId })).run;
    expect(done?.status).toBe(RunStatus.SUCCEEDED);
    expect(json(done?.output)).toEqual({ d: { total: 42 } });
    expect(done?.tasks.map((t) => [t.taskId, TaskStatus[t.status], t.attempt])).toEqual([
      ["a", "SUCCEEDED", 1],
      ["b", "SUCCEEDED", 1],
      ["c", "SUCCEEDED", 1],
      ["d", "SUCCEEDED", 1],
    ]);
    const taskA = done?.tasks[0];
    expect(taskA?.workerId).toBe("w-1");
    expect(json(taskA?.output)).toEqual({ from: "a", n: 3 });
    expect(taskA?.startTime && taskA.finishTime && taskA.queueTime).toBeTruthy();
    expect(done?.finishTime).toBeDefined();
  });

  it("streams the complete ordered event list, and a resumed watch gets exactly the rest", async () => {
    const { queue, workflow } = names("watch");
    await c.workflows.submitWorkflow({
      definition: { name: workflow, tasks: [task("a", [], { queue }), task("b", ["a"], { queue })] },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    const a = await pollTask(c, queue);
    await c.workers.completeTask({ leaseId: a.leaseId, output: value(1) });

    // A watcher that goes away after the first 4 events, mid-run.
    const first: string[] = [];
    const abort = new AbortController();
    for await (const res of c.workflows.watchRun({ runId }, { signal: abort.signal })) {
      first.push(`${res.event?.sequence} ${describeEvent(res.event!)}`);
      if (first.length === 4) break;
    }
    expect(first).toEqual([
      "1 RUN_STARTED",
      "2 TASK_QUEUED a#0",
      "3 TASK_STARTED a#1",
      "4 TASK_COMPLETED a#1",
    ]);

    const rest = collectEvents(c, runId, 4n);
    const b = await pollTask(c, queue);
    await c.workers.completeTask({ leaseId: b.leaseId, output: value(2) });
    expect((await rest).map((e) => `${e.sequence} ${describeEvent(e)}`)).toEqual([
      "5 TASK_QUEUED b#0",
      "6 TASK_STARTED b#1",
      "7 TASK_COMPLETED b#1",
      "8 RUN_FINISHED SUCCEEDED",
    ]);
    const all = await collectEvents(c, runId);
    expect(all.map((e) => Number(e.sequence))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // Resumed at or past the final event of a finished run: the stream ends at once, empty.
    expect(await collectEvents(c, runId, 8n)).toEqual([]);
    expect(await collectEvents(c, runId, 50n)).toEqual([]);
    expect(json(all[7]?.output)).toEqual({ b: 2 });
    expect(all[5]?.workerId).toBe("test-worker");
  });

  it("runs a 1 → 1,000 → 1 fan-out / fan-in with every task recorded once", async () => {
    const { queue, workflow } = names("fan");
    const wide = Array.from({ length: 1000 }, (_, i) => task(`m${i}`, ["root"], { queue }));
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        tasks: [
          task("root", [], { queue }),
          ...wide,
          task(
            "sink",
            wide.map((t) => t.id as string),
            { queue },
          ),
        ],
      },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    let sinkParents = 0;
    const loop = async () => {
      for (;;) {
        const res = await c.workers.pollTask({ queue, workerId: "fan", wait: { seconds: 2n } });
        const t = res.assignment;
        if (t === undefined) return;
        if (t.taskId === "sink") sinkParents = Object.keys(t.parentOutputs).length;
        await c.workers.completeTask({ leaseId: t.leaseId, output: value(t.taskId) });
        if (t.taskId === "sink") return;
      }
    };
    await Promise.all(Array.from({ length: 16 }, loop));
    const events = await collectEvents(c, runId);
    const completed = events.filter((e) => describeEvent(e).startsWith("TASK_COMPLETED"));
    expect(completed.length).toBe(1002);
    expect(new Set(completed.map((e) => e.taskId)).size).toBe(1002);
    expect(sinkParents).toBe(1000);
    expect(describeEvent(events[events.length - 1]!)).toBe("RUN_FINISHED SUCCEEDED");
  });
});

describe("many watchers", () => {
  it("serves 300 watchers of one run over a handful of Redis connections, each with every event", async () => {
    const { queue, workflow } = names("watchers");
    await c.workflows.submitWorkflow({
      definition: { name: workflow, tasks: [task("a", [], { queue }), task("b", ["a"], { queue })] },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    {
      const clients = () => redis.connectedClients();
      const before = await clients();
      const received = Array.from({ length: 300 }, () => [] as number[]);
      const watchers = received.map(async (events) => {
        for await (const res of c.workflows.watchRun({ runId })) events.push(Number(res.event?.sequence));
      });
      await waitFor(() => received.every((e) => e.length >= 2), {
        message: "every watcher to get the history",
      });
      expect((await clients()) - before).toBeLessThanOrEqual(3);
      for (let i = 0; i < 2; i++) {
        const t = await pollTask(c, queue);
        await c.workers.completeTask({ leaseId: t.leaseId });
      }
      await Promise.all(watchers);
      for (const events of received) expect(events).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    }
  });
});

describe("Trigger, GetRun and ListRuns", () => {
  it("returns one run for 20 concurrent triggers with the same idempotency key", async () => {
    const { queue, workflow } = names("idem");
    await c.workflows.submitWorkflow({ definition: { name: workflow, tasks: [task("a", [], { queue })] } });
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        c.workflows.trigger({ workflow, idempotencyKey: "order-17", input: value(1) }),
      ),
    );
    expect(new Set(results.map((r) => r.run?.id)).size).toBe(1);
    expect(results.filter((r) => r.created).length).toBe(1);
    const listed = await c.workflows.listRuns({ workflow });
    expect(listed.runs.map((r) => r.id)).toEqual([results[0]?.run?.id]);
    expect(listed.runs[0]?.idempotencyKey).toBe("order-17");
    // Exactly one job was queued for the root task.
    const t = await pollTask(c, queue);
    await c.workers.completeTask({ leaseId: t.leaseId });
    const none = await c.workers.pollTask({ queue, wait: { nanos: 300_000_000 } });
    expect(none.assignment).toBeUndefined();
  });

  it("answers bad and unknown names with the right codes", async () => {
    const { workflow } = names("codes");
    await c.workflows.submitWorkflow({ definition: { name: workflow, tasks: [task("a")] } });
    const unknown = await rpcError(c.workflows.trigger({ workflow: "missing-workflow" }));
    expect([unknown.code, unknown.rawMessage]).toEqual([
      Code.NotFound,
      'workflow "missing-workflow" not found',
    ]);
    const version = await rpcError(c.workflows.trigger({ workflow, version: 3 }));
    expect([version.code, version.rawMessage]).toEqual([
      Code.NotFound,
      `workflow "${workflow}" has no version 3 (latest is 1)`,
    ]);
    const empty = await rpcError(c.workflows.trigger({ workflow: "" }));
    expect([empty.code, empty.rawMessage]).toEqual([Code.InvalidArgument, "workflow: is required"]);
    const key = await rpcError(c.workflows.trigger({ workflow, idempotencyKey: "k".repeat(257) }));
    expect([key.code, key.rawMessage]).toEqual([
      Code.InvalidArgument,
      "idempotency_key: must be at most 256 characters",
    ]);
    const malformed = await rpcError(c.workflows.getRun({ runId: "nope" }));
    expect([malformed.code, malformed.rawMessage]).toEqual([
      Code.InvalidArgument,
      'run_id: "nope" is not a run id',
    ]);
    const missing = randomUUID();
    const notFound = await rpcError(c.workflows.getRun({ runId: missing }));
    expect([notFound.code, notFound.rawMessage]).toEqual([Code.NotFound, `run "${missing}" not found`]);
    const watch = await rpcError(collectEvents(c, missing));
    expect(watch.code).toBe(Code.NotFound);
    const cancel = await rpcError(c.workflows.cancel({ runId: missing }));
    expect(cancel.code).toBe(Code.NotFound);
  });

  it("lists runs newest first, filtered by workflow and status, page by page", async () => {
    const { queue, workflow } = names("list");
    await c.workflows.submitWorkflow({ definition: { name: workflow, tasks: [task("a", [], { queue })] } });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await c.workflows.trigger({ workflow })).run?.id ?? "");
    await c.workflows.cancel({ runId: ids[1] ?? "", reason: "test" });
    await c.workflows.cancel({ runId: ids[3] ?? "", reason: "test" });

    const pages: string[][] = [];
    let pageToken = "";
    do {
      const page = await c.workflows.listRuns({ workflow, pageSize: 2, pageToken });
      pages.push(page.runs.map((r) => r.id));
      pageToken = page.nextPageToken;
    } while (pageToken !== "" && pages.length < 10);
    expect(pages.flat()).toEqual([...ids].reverse());
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);

    const cancelled = await c.workflows.listRuns({ workflow, statuses: [RunStatus.CANCELLED] });
    expect(cancelled.runs.map((r) => r.id)).toEqual([ids[3], ids[1]]);
    expect(cancelled.runs[0]?.tasks).toEqual([]);
    const running = await c.workflows.listRuns({ workflow, statuses: [RunStatus.RUNNING], pageSize: 2 });
    expect(running.runs.map((r) => r.id)).toEqual([ids[4], ids[2]]);
    const next = await c.workflows.listRuns({
      workflow,
      statuses: [RunStatus.RUNNING],
      pageSize: 2,
      pageToken: running.nextPageToken,
    });
    expect(next.runs.map((r) => r.id)).toEqual([ids[0]]);
    expect(next.nextPageToken).toBe("");
    const badToken = await rpcError(c.workflows.listRuns({ pageToken: "garbage" }));
    expect([badToken.code, badToken.rawMessage]).toEqual([
      Code.InvalidArgument,
      "page_token: is not a token returned by ListRuns",
    ]);
    const badStatus = await rpcError(c.workflows.listRuns({ statuses: [0] }));
    expect([badStatus.code, badStatus.rawMessage]).toEqual([
      Code.InvalidArgument,
      "statuses[0]: is not a run status",
    ]);
  });
  it("pages through the runs of one BatchTrigger, which share a creation time, each once", async () => {
    const { queue, workflow } = names("list-batch");
    await c.workflows.submitWorkflow({ definition: { name: workflow, tasks: [task("a", [], { queue })] } });
    const batch = await c.workflows.batchTrigger({
      requests: Array.from({ length: 250 }, () => ({ workflow })),
    });
    const ids = batch.responses.map((r) => r.run?.id ?? "");
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await c.workflows.listRuns({ workflow, pageSize: 7, pageToken });
      seen.push(...page.runs.map((r) => r.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "" && pages < 100);
    // Runs of one time come by id, descending: 36 pages of 7 (the last one of 5).
    expect(seen).toEqual([...ids].sort().reverse());
    expect(pages).toBe(36);
    for (const id of ids) await c.workflows.cancel({ runId: id });
  });
});

describe("BatchTrigger", () => {
  it("starts every run as Trigger would, answering in order; a repeated idempotency key returns the first run", async () => {
    const a = names("batch-a");
    const b = names("batch-b");
    await c.workflows.submitWorkflow({
      definition: { name: a.workflow, tasks: [task("a", [], { queue: a.queue })] },
    });
    await c.workflows.submitWorkflow({
      definition: {
        name: b.workflow,
        tasks: [task("x", [], { queue: b.queue }), task("y", [], { queue: b.queue })],
      },
    });
    const { responses } = await c.workflows.batchTrigger({
      requests: [
        { workflow: a.workflow, input: value(0) },
        { workflow: b.workflow, version: 1, input: value(1) },
        { workflow: a.workflow, input: value(2), idempotencyKey: "k" },
        { workflow: a.workflow, input: value(3), idempotencyKey: "k" },
      ],
    });
    expect(responses.map((r) => [r.run?.workflow, json(r.run?.input), r.created, r.run?.status])).toEqual([
      [a.workflow, 0, true, RunStatus.RUNNING],
      [b.workflow, 1, true, RunStatus.RUNNING],
      [a.workflow, 2, true, RunStatus.RUNNING],
      // The same key: the run the third request started, with its input.
      [a.workflow, 2, false, RunStatus.RUNNING],
    ]);
    const ids = responses.map((r) => r.run?.id ?? "");
    expect(ids[3]).toBe(ids[2]);
    expect(new Set(ids).size).toBe(3);
    expect(responses[2]?.run?.idempotencyKey).toBe("k");
    expect((await c.workflows.getRun({ runId: ids[1] ?? "" })).run?.tasks.map((t) => t.status)).toEqual([
      TaskStatus.QUEUED,
      TaskStatus.QUEUED,
    ]);
    const listed = await c.workflows.listRuns({ workflow: a.workflow });
    expect(new Set(listed.runs.map((r) => r.id))).toEqual(new Set([ids[0], ids[2]]));

    // One job per root task of each run started: two on each queue, then nothing.
    for (const { queue } of [a, b]) {
      const leased = [await pollTask(c, queue), await pollTask(c, queue)];
      for (const t of leased) await c.workers.completeTask({ leaseId: t.leaseId });
      const none = await c.workers.pollTask({ queue, wait: { nanos: 300_000_000 } });
      expect(none.assignment).toBeUndefined();
      expect(leased.map((t) => t.runId).sort()).toEqual(
        (queue === a.queue ? [ids[0], ids[2]] : [ids[1], ids[1]]).sort(),
      );
    }
  });

  it("checks every request before starting any run, naming the request and its field", async () => {
    const { workflow } = names("batch-check");
    await c.workflows.submitWorkflow({ definition: { name: workflow, tasks: [task("a")] } });
    const none = await rpcError(c.workflows.batchTrigger({ requests: [] }));
    expect([none.code, none.rawMessage]).toEqual([
      Code.InvalidArgument,
      "requests: must hold 1 to 1000 requests",
    ]);
    const tooMany = await rpcError(
      c.workflows.batchTrigger({ requests: Array.from({ length: 1001 }, () => ({ workflow })) }),
    );
    expect([tooMany.code, tooMany.rawMessage]).toEqual([
      Code.InvalidArgument,
      "requests: must hold 1 to 1000 requests",
    ]);
    const invalid = await rpcError(
      c.workflows.batchTrigger({
        requests: [{ workflow }, { workflow: "" }, { workflow, idempotencyKey: "k".repeat(257) }],
      }),
    );
    expect([invalid.code, invalid.rawMessage]).toEqual([
      Code.InvalidArgument,
      "requests[1].workflow: is required; requests[2].idempotency_key: must be at most 256 characters",
    ]);
    const unknown = await rpcError(
      c.workflows.batchTrigger({
        requests: [{ workflow }, { workflow: "missing-workflow" }, { workflow, version: 4 }],
      }),
    );
    expect([unknown.code, unknown.rawMessage]).toEqual([
      Code.NotFound,
      'requests[1].workflow: workflow "missing-workflow" not found',
    ]);
    const version = await rpcError(
      c.workflows.batchTrigger({ requests: [{ workflow }, { workflow, version: 4 }] }),
    );
    expect([version.code, version.rawMessage]).toEqual([
      Code.NotFound,
      `requests[1].workflow: workflow "${workflow}" has no version 4 (latest is 1)`,
    ]);
    // Runs holding more tasks together than one workflow may (--max-tasks-per-workflow, 10,000 here).
    const big = `${workflow}-big`;
    await c.workflows.submitWorkflow({
      definition: { name: big, tasks: Array.from({ length: 4000 }, (_, i) => task(`t${i}`)) },
    });
    const tooBig = await rpcError(
      c.workflows.batchTrigger({
        requests: [{ workflow: big }, { workflow }, { workflow: big }, { workflow: big }],
      }),
    );
    expect([tooBig.code, tooBig.rawMessage]).toEqual([
      Code.ResourceExhausted,
      "requests: these runs hold 12001 tasks together, more than the 10000 one call may start (--max-tasks-per-workflow)",
    ]);
    // Nothing started: the valid requests did not run either.
    expect((await c.workflows.listRuns({ workflow })).runs).toEqual([]);
    expect((await c.workflows.listRuns({ workflow: big })).runs).toEqual([]);
  });
});

describe("Cancel", () => {
  it("removes queued tasks, tells running ones on their heartbeat, and ends the run CANCELLED", async () => {
    const { queue, workflow } = names("cancel");
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        tasks: [
          task("a", [], { queue }),
          task("b", ["a"], { queue }),
          task("c", ["a"], { queue }),
          task("d", ["b", "c"], { queue }),
        ],
      },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    const a = await pollTask(c, queue);
    await c.workers.completeTask({ leaseId: a.leaseId });
    const running = await pollTask(c, queue);
    const queuedId = running.taskId === "b" ? "c" : "b";

    const cancelled = (await c.workflows.cancel({ runId, reason: "operator said so" })).run;
    expect(cancelled?.status).toBe(RunStatus.CANCELLED);
    expect(cancelled?.error).toBe("operator said so");
    const statuses = Object.fromEntries(cancelled?.tasks.map((t) => [t.taskId, TaskStatus[t.status]]) ?? []);
    expect(statuses).toEqual({
      a: "SUCCEEDED",
      [running.taskId]: "CANCELLED",
      [queuedId]: "CANCELLED",
      d: "CANCELLED",
    });

    // The queued task's job is gone: nothing more to poll.
    expect((await c.workers.pollTask({ queue, wait: { nanos: 500_000_000 } })).assignment).toBeUndefined();
    // The running task sees the cancellation; what it reports afterwards does not count as success.
    expect((await c.workers.heartbeat({ leaseId: running.leaseId })).cancelRequested).toBe(true);
    expect(
      (await c.workers.completeTask({ leaseId: running.leaseId, output: value("late") })).cancelRequested,
    ).toBe(true);
    const after = (await c.workflows.getRun({ runId })).run;
    expect(TaskStatus[after?.tasks.find((t) => t.taskId === running.taskId)?.status ?? 0]).toBe("CANCELLED");

    // Idempotent: cancelling again returns the run unchanged.
    const again = (await c.workflows.cancel({ runId, reason: "twice" })).run;
    expect(again?.error).toBe("operator said so");
    expect(again?.lastSequence).toBe(after?.lastSequence);
    const events = (await collectEvents(c, runId)).map(describeEvent);
    expect(events.slice(-1)).toEqual(["RUN_FINISHED CANCELLED"]);
    expect(events.filter((e) => e.startsWith("TASK_CANCELLED")).length).toBe(3);
  });

  it("returns a finished run unchanged", async () => {
    const { queue, workflow } = names("cancel-done");
    await c.workflows.submitWorkflow({ definition: { name: workflow, tasks: [task("a", [], { queue })] } });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    const a = await pollTask(c, queue);
    await c.workers.completeTask({ leaseId: a.leaseId, output: value("ok") });
    const run = (await c.workflows.cancel({ runId })).run;
    expect(run?.status).toBe(RunStatus.SUCCEEDED);
    expect(run?.error).toBe("");
  });
});

describe("leases", () => {
  it("rejects a stale lease with FAILED_PRECONDITION and changes nothing", async () => {
    const { queue, workflow } = names("stale");
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        tasks: [task("a", [], { queue, retry: { maxAttempts: 3, initialBackoff: { nanos: 50_000_000 } } })],
      },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    const first = await pollTask(c, queue);
    const failed = await c.workers.failTask({
      leaseId: first.leaseId,
      error: { type: "Flaky", message: "try again" },
    });
    expect(failed.willRetry).toBe(true);
    const second = await pollTask(c, queue);
    expect(second.attempt).toBe(2);

    for (const call of [
      () => c.workers.completeTask({ leaseId: first.leaseId, output: value("stale") }),
      () => c.workers.heartbeat({ leaseId: first.leaseId }),
      () => c.workers.failTask({ leaseId: first.leaseId, error: { type: "X" } }),
    ]) {
      const err = await rpcError(call());
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(err.rawMessage).toMatch(/is no longer valid/);
    }
    const malformed = await rpcError(c.workers.completeTask({ leaseId: "not-a-lease" }));
    expect([malformed.code, malformed.rawMessage]).toEqual([
      Code.InvalidArgument,
      "lease_id: is not a lease id issued by PollTask",
    ]);
    const unknownLease = `${randomUUID()}.1.AAAAAAAAAAAAAAAAAAAAAA.a`;
    const unknown = await rpcError(c.workers.heartbeat({ leaseId: unknownLease }));
    expect([unknown.code, unknown.rawMessage]).toEqual([Code.NotFound, `lease "${unknownLease}" not found`]);
    const forged = second.leaseId.replace(/\.[A-Za-z0-9_-]{22}\./, ".BBBBBBBBBBBBBBBBBBBBBB.");
    expect((await rpcError(c.workers.completeTask({ leaseId: forged }))).code).toBe(Code.FailedPrecondition);

    const run = (await c.workflows.getRun({ runId })).run;
    expect(TaskStatus[run?.tasks[0]?.status ?? 0]).toBe("RUNNING");
    expect(run?.tasks[0]?.error?.type).toBe("Flaky");
    await c.workers.completeTask({ leaseId: second.leaseId, output: value("fresh") });
    const done = (await c.workflows.getRun({ runId })).run;
    expect(json(done?.output)).toEqual({ a: "fresh" });
  });

  it("ends an attempt whose heartbeat is missed and delivers the task again", async () => {
    const { queue, workflow } = names("hb");
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        tasks: [
          task("a", [], {
            queue,
            timeouts: { heartbeat: { nanos: 800_000_000 } },
            retry: { maxAttempts: 2, initialBackoff: { nanos: 10_000_000 } },
          }),
        ],
      },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    const first = await pollTask(c, queue, "silent-worker");
    // No heartbeat: the lease expires and the task comes back as attempt 2.
    const second = await pollTask(c, queue, "live-worker", 15n);
    expect([second.taskId, second.attempt]).toEqual(["a", 2]);
    const late = await rpcError(c.workers.completeTask({ leaseId: first.leaseId }));
    expect(late.code).toBe(Code.FailedPrecondition);
    await c.workers.completeTask({ leaseId: second.leaseId, output: value("second") });
    const events = await collectEvents(c, runId);
    expect(events.map(describeEvent)).toEqual([
      "RUN_STARTED",
      "TASK_QUEUED a#0",
      "TASK_STARTED a#1",
      "TASK_RETRYING a#1",
      "TASK_STARTED a#2",
      "TASK_COMPLETED a#2",
      "RUN_FINISHED SUCCEEDED",
    ]);
    expect(events[3]?.error?.type).toBe("HeartbeatTimeout");
  });

  it("fails the run at once on a non-retryable failure and skips what did not start", async () => {
    const { queue, workflow } = names("fail");
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        tasks: [task("a", [], { queue }), task("b", [], { queue }), task("c", ["a", "b"], { queue })],
      },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    const first = await pollTask(c, queue);
    const res = await c.workers.failTask({
      leaseId: first.leaseId,
      error: { type: "BadInput", message: "cannot parse", details: "stack" },
      retryable: false,
    });
    expect(res.willRetry).toBe(false);
    const run = (await c.workflows.getRun({ runId })).run;
    expect(run?.status).toBe(RunStatus.FAILED);
    expect(run?.error).toBe(`task "${first.taskId}" failed: BadInput: cannot parse`);
    const other = first.taskId === "a" ? "b" : "a";
    expect(Object.fromEntries(run?.tasks.map((t) => [t.taskId, TaskStatus[t.status]]) ?? [])).toEqual({
      [first.taskId]: "FAILED",
      [other]: "SKIPPED",
      c: "SKIPPED",
    });
    expect((await c.workers.pollTask({ queue, wait: { nanos: 300_000_000 } })).assignment).toBeUndefined();
  });
});

describe("retention", () => {
  it("expires a finished run with all its keys", async () => {
    const prefix = `retention-${randomUUID()}`;
    const short = await spawnWeftd({ redisUrl: redis.url, prefix, args: ["--run-retention", "1s"] });
    try {
      const sc = weftClients(short.address);
      const { queue, workflow } = names("retained");
      await sc.workflows.submitWorkflow({
        definition: { name: workflow, tasks: [task("a", [], { queue })] },
      });
      const runId = (await sc.workflows.trigger({ workflow })).run?.id ?? "";
      const a = await pollTask(sc, queue);
      await sc.workers.completeTask({ leaseId: a.leaseId });
      expect((await sc.workflows.getRun({ runId })).run?.status).toBe(RunStatus.SUCCEEDED);
      await waitFor(async () => (await redis.keys(`${prefix}:run:{${runId}}*`)).length === 0, {
        message: "the run's keys to expire",
        timeoutMs: 10_000,
      });
      expect((await rpcError(sc.workflows.getRun({ runId }))).code).toBe(Code.NotFound);
      expect((await sc.workflows.listRuns({ workflow })).runs).toEqual([]);
    } finally {
      await short.stop();
    }
  });
});
