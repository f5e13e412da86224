/**
 * WatchRuns: many runs and workflows on one stream, against a real weftd and Redis. What a client
 * depends on: each followed run's RUN_FINISHED (or every event) once, in order, resumable after a
 * sequence; a run that does not exist or is resumed past its end said so on the stream; every field
 * checked; the bounds of a stream named when they are reached.
 */
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, within } from "./support/index.js";
import { openRunsWatch } from "./support/watch-runs.js";
import { EventType, json, RunStatus, value, type WeftClients, weftClients } from "./support/weft.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({
    redisUrl: redis.url,
    args: ["--max-runs-per-watch", "50", "--max-watch-buffer", "200"],
  });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

/** A workflow a → b on a queue of its own; returns its name (also the queue's). */
async function chainWorkflow(): Promise<string> {
  const name = `chain-${randomUUID().slice(0, 8)}`;
  await c.workflows.submitWorkflow({
    definition: {
      name,
      tasks: [
        { id: "a", handler: "h", queue: name },
        { id: "b", handler: "h", queue: name, dependsOn: ["a"] },
      ],
    },
  });
  return name;
}

async function trigger(workflow: string, n: number): Promise<string[]> {
  const res = await c.workflows.batchTrigger({
    requests: Array.from({ length: n }, (_, i) => ({ workflow, input: value(i) })),
  });
  return res.responses.map((r) => r.run?.id ?? "");
}

/** Completes `n` tasks of `queue`, each with output "out-<taskId>". */
async function work(queue: string, n: number): Promise<void> {
  for (let done = 0; done < n; ) {
    const res = await c.workers.pollTask({ queue, workerId: "w", maxTasks: 100, wait: { seconds: 10n } });
    const batch = [res.assignment, ...res.moreAssignments].filter((t) => t !== undefined);
    if (batch.length === 0) throw new Error(`no task of "${queue}" within 10 s after ${done} of ${n}`);
    await c.workers.completeTasks({
      completions: batch.map((t) => ({ leaseId: t.leaseId, output: value(`out-${t.taskId}`) })),
    });
    done += batch.length;
  }
}

describe("WatchRuns", () => {
  it("sends each followed run's RUN_FINISHED once, with its sequence and output, and ends once the client half-closed", async () => {
    const wf = await chainWorkflow();
    const runIds = await trigger(wf, 20);
    const watch = openRunsWatch(c.workflows, { addRuns: runIds.map((runId) => ({ runId })) });
    await work(wf, 40);
    await watch.until("20 RUN_FINISHED events", () => watch.events.length >= 20);
    watch.end();
    expect(await within(watch.done, 10_000, "the stream to end after the half-close")).toBeUndefined();
    expect(watch.messages[0]?.events).toEqual([]);
    expect(watch.rejections).toEqual([]);
    expect(watch.events.map((e) => e.runId).sort()).toEqual([...runIds].sort());
    for (const e of watch.events) {
      expect(e.type).toBe(EventType.RUN_FINISHED);
      expect(e.runStatus).toBe(RunStatus.SUCCEEDED);
      // RUN_STARTED, 2 × (queued, started, completed), RUN_FINISHED.
      expect(e.sequence).toBe(8n);
      expect(json(e.output)).toEqual({ b: "out-b" });
    }
  });

  it("sends every event of a run followed with all_events, after its cursor, in order", async () => {
    const wf = await chainWorkflow();
    const [runId = ""] = await trigger(wf, 1);
    const watch = openRunsWatch(c.workflows, { addRuns: [{ runId, afterSequence: 1n, allEvents: true }] });
    await work(wf, 2);
    await watch.until(
      "the run's events up to RUN_FINISHED",
      () => watch.events.at(-1)?.type === EventType.RUN_FINISHED,
    );
    expect(watch.events.map((e) => Number(e.sequence))).toEqual([2, 3, 4, 5, 6, 7, 8]);
    watch.end();
    expect(await within(watch.done, 10_000, "the stream to end")).toBeUndefined();
  });

  it("answers a run that does not exist with NOT_FOUND, and one resumed at its end with OUT_OF_RANGE", async () => {
    const wf = await chainWorkflow();
    const [runId = ""] = await trigger(wf, 1);
    await work(wf, 2);
    const missing = randomUUID();
    const watch = openRunsWatch(c.workflows, {
      addRuns: [{ runId: missing }, { runId, afterSequence: 8n, allEvents: true }],
    });
    await watch.until("two rejections", () => watch.rejections.length >= 2);
    const byRun = new Map(watch.rejections.map((r) => [r.runId, r]));
    expect(byRun.get(missing)).toMatchObject({ code: Code.NotFound, message: `run "${missing}" not found` });
    expect(byRun.get(runId)).toMatchObject({
      code: Code.OutOfRange,
      message: `run "${runId}" finished at sequence 8: no event follows sequence 8`,
    });
    // Resumed before its end, a finished run's final event comes at once.
    watch.send({ addRuns: [{ runId, afterSequence: 7n }] });
    await watch.until("the finished run's RUN_FINISHED", () => watch.events.length === 1);
    expect(watch.events[0]?.sequence).toBe(8n);
    watch.cancel();
  });

  it("follows a workflow: every run of it that finishes while followed, once even when also followed by id", async () => {
    const wf = await chainWorkflow();
    const watch = openRunsWatch(c.workflows, { addWorkflows: [{ workflow: wf }] });
    await watch.until("the stream's first message", () => watch.messages.length >= 1);
    const runIds = await trigger(wf, 5);
    watch.send({ addRuns: [{ runId: runIds[0] as string }] });
    await work(wf, 10);
    await watch.until("5 RUN_FINISHED events", () => watch.events.length >= 5);
    // Nothing else comes: a later run of another workflow is not sent.
    const other = await chainWorkflow();
    const [otherRun = ""] = await trigger(other, 1);
    await work(other, 2);
    watch.send({ removeWorkflows: [wf], addRuns: [{ runId: otherRun }] });
    await watch.until("the other run's RUN_FINISHED", () => watch.events.length >= 6);
    expect(
      watch.events
        .slice(0, 5)
        .map((e) => e.runId)
        .sort(),
    ).toEqual([...runIds].sort());
    expect(watch.events[5]?.runId).toBe(otherRun);
    watch.end();
    expect(await within(watch.done, 10_000, "the stream to end")).toBeUndefined();
  });

  it("refuses a run past --max-runs-per-watch with RESOURCE_EXHAUSTED naming the limit, and takes it once there is room", async () => {
    const wf = await chainWorkflow();
    const runIds = await trigger(wf, 51);
    const watch = openRunsWatch(c.workflows, { addRuns: runIds.map((runId) => ({ runId })) });
    await watch.until("a rejection", () => watch.rejections.length >= 1);
    expect(watch.rejections).toHaveLength(1);
    expect(watch.rejections[0]).toMatchObject({
      runId: runIds[50],
      code: Code.ResourceExhausted,
      message: "this stream already follows 50 runs (limit 50 per stream, --max-runs-per-watch)",
    });
    watch.send({ removeRuns: [runIds[0] as string], addRuns: [{ runId: runIds[50] as string }] });
    await work(wf, 102);
    await watch.until("50 RUN_FINISHED events", () => watch.events.length >= 50);
    expect(new Set(watch.events.map((e) => e.runId))).toEqual(new Set(runIds.slice(1)));
    watch.cancel();
  });

  it("ends the stream with INVALID_ARGUMENT naming every field in error", async () => {
    const watch = openRunsWatch(c.workflows, {
      addRuns: [
        { runId: "" },
        { runId: "not a run" },
        { runId: "3f1e7a52-7c3e-4c55-9a53-6c7f6bd2a0aa", afterSequence: -1n },
        { runId: "3f1e7a52-7c3e-4c55-9a53-6c7f6bd2a0aa" },
      ],
      removeRuns: ["x"],
      addWorkflows: [{ workflow: "" }, { workflow: "bad name" }],
      removeWorkflows: ["a/b"],
    });
    const err = await within(watch.done, 10_000, "the stream to fail");
    expect(err?.code).toBe(Code.InvalidArgument);
    for (const part of [
      "add_runs[0].run_id: is required",
      'add_runs[1].run_id: "not a run" is not a run id',
      "add_runs[2].after_sequence: must not be negative",
      "add_runs[3].run_id: appears twice",
      'remove_runs[0]: "x" is not a run id',
      "add_workflows[0].workflow: is required",
      "add_workflows[1].workflow: must be 1-128 characters from [A-Za-z0-9_.-]",
      "remove_workflows[0]: must be 1-128 characters from [A-Za-z0-9_.-]",
    ]) {
      expect(err?.rawMessage).toContain(part);
    }
  });
});
