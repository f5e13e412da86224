import { randomUUID } from "node:crypto";
import {
  Code,
  createWeftClient,
  EventType,
  InvalidArgumentError,
  InvalidWorkflowError,
  RunCancelledError,
  RunFailedError,
  RunNotFoundError,
  RunStatus,
  TaskStatus,
  toValue,
  type WeftClient,
  WeftUnavailableError,
  WorkflowNotFoundError,
  workflow,
} from "@weft/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess } from "./support/index.js";
import { pollTask, value, type WeftClients, weftClients } from "./support/weft.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let client: WeftClient;
let raw: WeftClients;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
  client = createWeftClient({ address: weftd.address });
  raw = weftClients(weftd.address);
});

afterAll(async () => {
  client?.close();
  await weftd?.stop();
  await redis?.close();
});

/** A fresh workflow and queue name for one test. */
function names(label: string) {
  const id = randomUUID().slice(0, 8);
  return { queue: `${label}-${id}`, name: `${label}-${id}` };
}

/** The error a promise rejected with (fails when it resolved). */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection, the promise resolved");
}

/** Submits a two-task chain a → b on `queue`. */
async function chain(name: string, queue: string) {
  return client.submitWorkflow(
    workflow(name)
      .task("a", { handler: "echo", queue })
      .task("b", { handler: "echo", queue, dependsOn: ["a"] }),
  );
}

describe("submitWorkflow, getWorkflow, listWorkflows", () => {
  it("stores a builder-made workflow once per content and returns its plan", async () => {
    const { name, queue } = names("etl");
    const etl = workflow(name, { description: "an ETL" })
      .task("extract", { queue, input: { source: "s3://bucket" }, retry: { maxAttempts: 5 } })
      .task("clean", { queue, dependsOn: ["extract"] })
      .task("enrich", { queue, dependsOn: ["extract"], timeouts: { startToClose: "2m" } })
      .task("load", { queue, dependsOn: ["clean", "enrich"] });
    const first = await client.submitWorkflow(etl);
    expect([first.created, first.workflow.version, first.layers]).toEqual([
      true,
      1,
      [["extract"], ["clean", "enrich"], ["load"]],
    ]);
    const again = await client.submitWorkflow(etl.toSpec());
    expect([again.created, again.workflow.version]).toEqual([false, 1]);

    const got = await client.getWorkflow(name);
    const def = got.workflow.definition;
    expect(def?.description).toBe("an ETL");
    expect(def?.tasks.map((t) => [t.id, t.handler, t.queue, t.dependsOn])).toEqual([
      ["extract", "extract", queue, []],
      ["clean", "clean", queue, ["extract"]],
      ["enrich", "enrich", queue, ["extract"]],
      ["load", "load", queue, ["clean", "enrich"]],
    ]);
    expect(def?.tasks[0]?.retry?.maxAttempts).toBe(5);
    expect(def?.tasks[2]?.timeouts?.startToClose?.seconds).toBe(120n);
    expect(got.layers).toEqual(first.layers);
  });

  it("plans without storing with validateOnly", async () => {
    const { name } = names("dry");
    const res = await client.submitWorkflow(
      { name, tasks: [{ id: "a" }, { id: "b", dependsOn: ["a"] }] },
      { validateOnly: true },
    );
    expect([res.created, res.workflow.version, res.layers]).toEqual([false, 0, [["a"], ["b"]]]);
    const err = await rejection(client.getWorkflow(name));
    expect(err).toBeInstanceOf(WorkflowNotFoundError);
  });

  it("rejects an invalid definition with InvalidWorkflowError and its field violations", async () => {
    const { name } = names("bad");
    const err = await rejection(
      client.submitWorkflow({
        name,
        tasks: [
          { id: "a", dependsOn: ["c"] },
          { id: "b", dependsOn: ["a"] },
          { id: "c", dependsOn: ["b"] },
          { id: "d", dependsOn: ["nope"] },
        ],
      }),
    );
    expect(err).toBeInstanceOf(InvalidWorkflowError);
    const invalid = err as InvalidWorkflowError;
    expect(invalid.code).toBe(Code.InvalidArgument);
    expect(invalid.violations).toEqual([
      {
        field: "definition.tasks[3].depends_on[0]",
        description: 'depends_on names unknown task "nope"',
      },
      { field: "definition.tasks", description: "cycle: a -> b -> c -> a" },
    ]);
    expect(invalid.message).toBe(
      'definition.tasks[3].depends_on[0]: depends_on names unknown task "nope"; definition.tasks: cycle: a -> b -> c -> a',
    );
  });

  it("names the missing workflow in WorkflowNotFoundError", async () => {
    const err = await rejection(client.getWorkflow("no-such-workflow"));
    expect(err).toBeInstanceOf(WorkflowNotFoundError);
    expect((err as WorkflowNotFoundError).workflow).toBe("no-such-workflow");
    expect(err.message).toBe('workflow "no-such-workflow" not found');
  });

  it("lists every workflow across pages", async () => {
    const prefix = `zz-list-${randomUUID().slice(0, 6)}`;
    const created = [];
    for (let i = 0; i < 5; i++) {
      const name = `${prefix}-${i}`;
      await client.submitWorkflow({ name, tasks: [{ id: "a" }, { id: "b" }] });
      created.push(name);
    }
    const listed = [];
    for await (const w of client.listWorkflows({ pageSize: 2 })) {
      if (w.name.startsWith(prefix)) listed.push([w.name, w.latestVersion, w.taskCount]);
    }
    expect(listed).toEqual(created.map((n) => [n, 1, 2]));
  });
});

describe("trigger, getRun, listRuns, cancel", () => {
  it("returns the same run for the same idempotency key, and pins versions", async () => {
    const { name, queue } = names("trig");
    await chain(name, queue);
    const first = await client.trigger(name, { n: 1 }, { idempotencyKey: "order-1" });
    const again = await client.trigger(name, { n: 2 }, { idempotencyKey: "order-1" });
    expect([first.created, again.created, again.run.id]).toEqual([true, false, first.run.id]);
    expect(first.run.status).toBe(RunStatus.RUNNING);

    const run = await client.getRun(first.run.id);
    expect([run.workflow, run.workflowVersion, run.idempotencyKey]).toEqual([name, 1, "order-1"]);
    expect(run.tasks.map((t) => [t.taskId, TaskStatus[t.status]])).toEqual([
      ["a", "QUEUED"],
      ["b", "PENDING"],
    ]);

    const missing = await rejection(client.trigger(name, null, { version: 7 }));
    expect(missing).toBeInstanceOf(WorkflowNotFoundError);
    expect([(missing as WorkflowNotFoundError).workflow, (missing as WorkflowNotFoundError).version]).toEqual(
      [name, 7],
    );
    expect(missing.message).toBe(`workflow "${name}" has no version 7 (latest is 1)`);
  });

  it("starts many runs in one call with triggerMany, in order, or none when one names an unknown workflow", async () => {
    const { name, queue } = names("many");
    await chain(name, queue);
    const results = await client.triggerMany([
      { workflow: name, input: { n: 1 } },
      { workflow: name, input: { n: 2 }, idempotencyKey: "many-1" },
      { workflow: name, input: { n: 3 }, idempotencyKey: "many-1", version: 1 },
    ]);
    expect(results.map((r) => [r.run.workflow, r.created, r.run.idempotencyKey])).toEqual([
      [name, true, ""],
      [name, true, "many-1"],
      [name, false, "many-1"],
    ]);
    expect(results[2]?.run.id).toBe(results[1]?.run.id);
    expect((await client.getRun(results[0]?.run.id ?? "")).tasks.map((t) => TaskStatus[t.status])).toEqual([
      "QUEUED",
      "PENDING",
    ]);

    const missing = await rejection(client.triggerMany([{ workflow: name }, { workflow: "nope-many" }]));
    expect(missing).toBeInstanceOf(WorkflowNotFoundError);
    expect((missing as WorkflowNotFoundError).workflow).toBe("nope-many");
    expect(missing.message).toBe('requests[1].workflow: workflow "nope-many" not found');
    const invalid = await rejection(client.triggerMany([]));
    expect(invalid).toBeInstanceOf(InvalidArgumentError);
    expect((invalid as InvalidArgumentError).violations).toEqual([
      { field: "requests", description: "must hold 1 to 1000 requests" },
    ]);
    const runs: string[] = [];
    for await (const run of client.listRuns({ workflow: name })) runs.push(run.id);
    expect(runs.sort()).toEqual([results[0]?.run.id, results[1]?.run.id].sort());
  });

  it("throws WorkflowNotFoundError for an unknown workflow and RunNotFoundError for an unknown run", async () => {
    const wf = await rejection(client.trigger("nope-workflow"));
    expect(wf).toBeInstanceOf(WorkflowNotFoundError);
    expect((wf as WorkflowNotFoundError).workflow).toBe("nope-workflow");

    const runId = "00000000-0000-4000-8000-000000000000";
    for (const call of [() => client.getRun(runId), () => client.cancel(runId), () => client.result(runId)]) {
      const err = await rejection(call());
      expect(err).toBeInstanceOf(RunNotFoundError);
      expect((err as RunNotFoundError).runId).toBe(runId);
      expect(err.message).toBe(`run "${runId}" not found`);
    }
    const watched = await rejection(
      (async () => {
        for await (const _ of client.watch(runId)) {
          // never reached
        }
      })(),
    );
    expect(watched).toBeInstanceOf(RunNotFoundError);
  });

  it("throws InvalidArgumentError with violations for a bad request that is no workflow", async () => {
    const { name, queue } = names("badreq");
    await chain(name, queue);
    const err = await rejection(client.trigger(name, null, { idempotencyKey: "k".repeat(300) }));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err).not.toBeInstanceOf(InvalidWorkflowError);
    expect((err as InvalidArgumentError).violations).toEqual([
      { field: "idempotency_key", description: "must be at most 256 characters" },
    ]);
  });

  it("lists runs newest first across pages, filtered by workflow and status", async () => {
    const { name, queue } = names("list");
    await chain(name, queue);
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await client.trigger(name, i)).run.id);
    await client.cancel(ids[1] ?? "", "not needed");

    const all = [];
    for await (const r of client.listRuns({ workflow: name, pageSize: 2 })) all.push(r.id);
    expect(all).toEqual([...ids].reverse());
    const cancelled = [];
    for await (const r of client.listRuns({ workflow: name, statuses: [RunStatus.CANCELLED] })) {
      cancelled.push([r.id, r.error]);
    }
    expect(cancelled).toEqual([[ids[1], "not needed"]]);
  });

  it("cancels idempotently and result() rejects with RunCancelledError", async () => {
    const { name, queue } = names("cancel");
    await chain(name, queue);
    const { run } = await client.trigger(name);
    // Handled from the start: the run is cancelled before anything awaits it.
    const pending = rejection(client.result(run.id));
    const cancelled = await client.cancel(run.id, "changed my mind");
    expect([cancelled.status, cancelled.error]).toEqual([RunStatus.CANCELLED, "changed my mind"]);
    const again = await client.cancel(run.id, "twice");
    expect([again.status, again.error]).toEqual([RunStatus.CANCELLED, "changed my mind"]);
    const err = await pending;
    expect(err).toBeInstanceOf(RunCancelledError);
    expect([(err as RunCancelledError).runId, (err as RunCancelledError).reason]).toEqual([
      run.id,
      "changed my mind",
    ]);
    expect(err.message).toBe(`run "${run.id}" was cancelled: changed my mind`);
  });
});

describe("watch and result", () => {
  it("streams every event in order, resumes after a sequence, and result() gives the output", async () => {
    const { name, queue } = names("watch");
    await chain(name, queue);
    const { run } = await client.trigger(name, { n: 1 });
    const output = client.result(run.id);
    const a = await pollTask(raw, queue);
    await raw.workers.completeTask({ leaseId: a.leaseId, output: value({ a: 1 }) });
    const b = await pollTask(raw, queue);
    await raw.workers.completeTask({ leaseId: b.leaseId, output: value({ b: 2 }) });
    expect(await output).toEqual({ b: { b: 2 } });

    const events = [];
    for await (const e of client.watch(run.id)) events.push(`${e.sequence} ${EventType[e.type]} ${e.taskId}`);
    expect(events).toEqual([
      "1 RUN_STARTED ",
      "2 TASK_QUEUED a",
      "3 TASK_STARTED a",
      "4 TASK_COMPLETED a",
      "5 TASK_QUEUED b",
      "6 TASK_STARTED b",
      "7 TASK_COMPLETED b",
      "8 RUN_FINISHED ",
    ]);
    const rest = [];
    for await (const e of client.watch(run.id, { afterSequence: 6 })) rest.push(Number(e.sequence));
    expect(rest).toEqual([7, 8]);
    // Nothing after the last event of a finished run: the watch ends at once, without reconnecting.
    const reconnects: unknown[] = [];
    const none = [];
    for await (const e of client.watch(run.id, {
      afterSequence: 8,
      onReconnect: (r) => reconnects.push(r),
    })) {
      none.push(e);
    }
    expect([none, reconnects]).toEqual([[], []]);
    // A finished run's result comes straight from GetRun.
    expect(await client.result(run.id)).toEqual({ b: { b: 2 } });
  });

  it("rejects result() with RunFailedError naming the failed task and its error", async () => {
    const { name, queue } = names("fail");
    await chain(name, queue);
    const { run } = await client.trigger(name);
    const pending = rejection(client.result(run.id));
    const a = await pollTask(raw, queue);
    await raw.workers.failTask({
      leaseId: a.leaseId,
      error: { type: "ValueError", message: "bad row 17", details: "at line 3" },
      retryable: false,
    });
    const err = await pending;
    expect(err).toBeInstanceOf(RunFailedError);
    const failed = err as RunFailedError;
    expect(failed.runId).toBe(run.id);
    expect(failed.run.status).toBe(RunStatus.FAILED);
    expect(failed.failedTasks).toEqual([
      {
        taskId: "a",
        attempt: 1,
        maxAttempts: 3,
        errorType: "ValueError",
        errorMessage: "bad row 17",
        errorDetails: "at line 3",
      },
    ]);
    expect(failed.message).toBe(
      `run "${run.id}" failed: task "a" failed (attempt 1/3): ValueError: bad row 17`,
    );
  });

  it.each(["connect", "grpc-web"] as const)("works over the %s protocol", async (protocol) => {
    const other = createWeftClient({ address: weftd.address, protocol });
    try {
      const { name, queue } = names(protocol);
      await other.submitWorkflow(workflow(name).task("only", { queue }));
      const { run } = await other.trigger(name, "x");
      const t = await pollTask(raw, queue);
      await raw.workers.completeTask({ leaseId: t.leaseId, output: toValue("done") });
      expect(await other.result(run.id)).toEqual({ only: "done" });
      const types = [];
      for await (const e of other.watch(run.id)) types.push(EventType[e.type]);
      expect(types).toEqual(["RUN_STARTED", "TASK_QUEUED", "TASK_STARTED", "TASK_COMPLETED", "RUN_FINISHED"]);
      expect(await rejection(other.getRun("00000000-0000-4000-8000-000000000000"))).toBeInstanceOf(
        RunNotFoundError,
      );
    } finally {
      other.close();
    }
  });

  it("fails with WeftUnavailableError when no daemon listens", async () => {
    const nobody = createWeftClient({
      address: "127.0.0.1:1",
      reconnect: { maxAttempts: 1, initialDelayMs: 10 },
    });
    const err = await rejection(nobody.getRun("x"));
    expect(err).toBeInstanceOf(WeftUnavailableError);
    expect((err as WeftUnavailableError).code).toBe(Code.Unavailable);
    const watched = await rejection(
      (async () => {
        for await (const _ of nobody.watch("x")) {
          // never reached
        }
      })(),
    );
    expect(watched).toBeInstanceOf(WeftUnavailableError);
    nobody.close();
  });
});
