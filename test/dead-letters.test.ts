import { randomUUID } from "node:crypto";
import { durationFromMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { createWeftClient } from "@weft/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import { TestFiles } from "./support/journal.js";
import { expectNoRunRunning, runOutcome } from "./support/liveness.js";
import { RunStatus, rpcError, TaskStatus, task, type WeftClients, weftClients } from "./support/weft.js";
import { spawnWorker } from "./support/worker-process.js";

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

async function allFinished(workflow: string, timeoutMs = 60_000) {
  await expectNoRunRunning(c, workflow, timeoutMs);
}

describe("the dead-letter view", () => {
  it("lists every cause of a final failure, filtered and paged, and discards entries", async () => {
    const queue = `dl-${randomUUID().slice(0, 8)}`;
    const other = `${queue}-other`;
    const files = new TestFiles();
    const defs: [string, string, object][] = [
      [`${queue}-flaky`, queue, { handler: "flaky" }],
      [`${queue}-bad`, queue, { handler: "failNonRetryable" }],
      [`${queue}-unknown`, queue, { handler: "no-such-handler" }],
      [`${queue}-other`, other, { handler: "flaky" }],
    ];
    for (const [name, q, extra] of defs) {
      await c.workflows.submitWorkflow({
        definition: {
          name,
          defaultRetry: { maxAttempts: 2, initialBackoff: durationFromMs(20) },
          tasks: [task("t", [], { queue: q, ...extra })],
        },
      });
    }
    // A task no worker starts in time: ScheduleToStartTimeout, on a queue nobody polls.
    const lonely = `${queue}-lonely`;
    await c.workflows.submitWorkflow({
      definition: {
        name: lonely,
        tasks: [task("t", [], { queue: lonely, timeouts: { scheduleToStart: durationFromMs(300) } })],
      },
    });
    const workers = [
      await spawnWorker({ address: weftd.address, queue, env: files.env }),
      await spawnWorker({ address: weftd.address, queue: other, env: files.env }),
    ];
    try {
      const before = Date.now();
      const runs: Record<string, string> = {};
      for (const [name] of [...defs, [lonely]]) {
        runs[name as string] = (await c.workflows.trigger({ workflow: name as string })).run?.id ?? "";
      }
      for (const [name] of [...defs, [lonely]]) await allFinished(name as string);
      const all = (await c.failures.listDeadLetters({ pageSize: 1000 })).deadLetters.filter((d) =>
        d.workflow.startsWith(queue),
      );
      const byWorkflow = Object.fromEntries(
        all.map((d) => [
          d.workflow,
          [d.taskId, d.queue, d.handler, d.attempts, d.maxAttempts, d.error?.type],
        ]),
      );
      expect(byWorkflow).toEqual({
        [`${queue}-flaky`]: ["t", queue, "flaky", 2, 2, "Error"],
        [`${queue}-bad`]: ["t", queue, "failNonRetryable", 1, 2, "BadInput"],
        [`${queue}-unknown`]: ["t", queue, "no-such-handler", 1, 2, "UnknownHandler"],
        [`${queue}-other`]: ["t", other, "flaky", 2, 2, "Error"],
        [lonely]: ["t", lonely, "echo", 0, 3, "ScheduleToStartTimeout"],
      });
      for (const d of all) {
        expect(d.id).toBe(`${runs[d.workflow]}/t/0`);
        expect(d.runId).toBe(runs[d.workflow]);
        expect(timestampMs(d.failTime ?? timestampFromMs(0))).toBeGreaterThanOrEqual(before);
      }
      // Newest first.
      const times = all.map((d) => timestampMs(d.failTime ?? timestampFromMs(0)));
      expect([...times].sort((a, b) => b - a)).toEqual(times);

      // Filters: queue, workflow, error type, time range; one that matches nothing is an empty page.
      const ids = async (filter: object) =>
        (await c.failures.listDeadLetters({ filter, pageSize: 100 })).deadLetters
          .map((d) => d.workflow)
          .sort();
      expect(await ids({ queue })).toEqual([`${queue}-bad`, `${queue}-flaky`, `${queue}-unknown`]);
      expect(await ids({ workflow: `${queue}-other` })).toEqual([`${queue}-other`]);
      expect(await ids({ queue, errorType: "BadInput" })).toEqual([`${queue}-bad`]);
      expect(await ids({ errorType: "UnknownHandler", workflow: `${queue}-unknown` })).toEqual([
        `${queue}-unknown`,
      ]);
      expect(await ids({ queue, until: timestampFromMs(before) })).toEqual([]);
      expect(await ids({ queue: "no-such-queue" })).toEqual([]);
      expect(await ids({ queue, since: timestampFromMs(Date.now() + 60_000) })).toEqual([]);

      // Pages of one, each with a token to the next.
      const paged: string[] = [];
      let pageToken = "";
      do {
        const page = await c.failures.listDeadLetters({ filter: { queue }, pageSize: 1, pageToken });
        expect(page.deadLetters.length).toBeLessThanOrEqual(1);
        paged.push(...page.deadLetters.map((d) => d.workflow));
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      expect(paged.sort()).toEqual([`${queue}-bad`, `${queue}-flaky`, `${queue}-unknown`]);

      // Discard one: it leaves the view, its run stays FAILED; a second discard finds nothing.
      const badId = `${runs[`${queue}-bad`]}/t/0`;
      const discarded = await c.failures.discardDeadLetter({ id: badId });
      expect(discarded.deadLetter?.error?.type).toBe("BadInput");
      expect(await ids({ queue })).toEqual([`${queue}-flaky`, `${queue}-unknown`]);
      expect((await c.workflows.getRun({ runId: runs[`${queue}-bad`] ?? "" })).run?.status).toBe(
        RunStatus.FAILED,
      );
      const again = await rpcError(c.failures.discardDeadLetter({ id: badId }));
      expect([again.code, again.rawMessage]).toEqual([Code.NotFound, `dead letter "${badId}" not found`]);
      const retryGone = await rpcError(c.failures.retryDeadLetter({ id: badId }));
      expect(retryGone.code).toBe(Code.NotFound);

      // Discard every match of a filter.
      const bulk = await c.failures.discardDeadLetters({ filter: { queue, errorType: "UnknownHandler" } });
      expect([bulk.discarded, bulk.nextPageToken]).toEqual([1, ""]);
      expect(await ids({ queue })).toEqual([`${queue}-flaky`]);
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
  }, 120_000);

  it("refuses bad input with the right code, naming the field", async () => {
    const cases: [() => Promise<unknown>, Code, string][] = [
      [() => c.failures.getDeadLetter({ id: "" }), Code.InvalidArgument, "id: is required"],
      [
        () => c.failures.getDeadLetter({ id: "nope" }),
        Code.InvalidArgument,
        'id: "nope" is not a dead-letter id (<run id>/<task id>/<resume count>)',
      ],
      [
        () => c.failures.getDeadLetter({ id: `${randomUUID()}/t/0` }),
        Code.NotFound,
        "dead letter", // the id follows
      ],
      [
        () => c.failures.listDeadLetters({ pageSize: 1001 }),
        Code.InvalidArgument,
        "page_size: must be between 0 and 1000",
      ],
      [
        () => c.failures.listDeadLetters({ pageToken: "garbage" }),
        Code.InvalidArgument,
        "page_token: is not a token returned by this call",
      ],
      [
        () => c.failures.listDeadLetters({ filter: { queue: "a b" } }),
        Code.InvalidArgument,
        "filter.queue: must be 1-128 characters from [A-Za-z0-9_.-]",
      ],
      [
        () =>
          c.failures.listDeadLetters({
            filter: { since: timestampFromMs(2000), until: timestampFromMs(1000) },
          }),
        Code.InvalidArgument,
        "filter.until: must not be before filter.since",
      ],
      [
        () => c.failures.retryDeadLetters({ limit: 5000 }),
        Code.InvalidArgument,
        "limit: must be between 0 and 1000",
      ],
      [() => c.failures.resumeRun({ runId: "" }), Code.InvalidArgument, "run_id: is required"],
      [() => c.failures.resumeRun({ runId: "x" }), Code.InvalidArgument, 'run_id: "x" is not a run id'],
      [
        () => c.failures.resumeRun({ runId: randomUUID().replace(/^.{8}/, "00000000") }),
        Code.NotFound,
        "run ",
      ],
      [
        () => c.failures.resumeRun({ runId: randomUUID(), idempotencyKey: "k".repeat(257) }),
        Code.InvalidArgument,
        "idempotency_key: must be at most 256 characters",
      ],
      [
        () => c.failures.resumeRun({ runId: randomUUID(), fromTask: "a/b" }),
        Code.InvalidArgument,
        "from_task: must be 1-128 characters from [A-Za-z0-9_.-]",
      ],
    ];
    for (const [call, code, message] of cases) {
      const err = await rpcError(call());
      expect([Code[err.code], err.rawMessage.startsWith(message)], err.rawMessage).toEqual([
        Code[code],
        true,
      ]);
    }
    // A running run, and a task that is not the run's.
    const queue = `bad-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({ definition: { name: queue, tasks: [task("a", [], { queue })] } });
    const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
    const running = await rpcError(c.failures.resumeRun({ runId }));
    expect([running.code, running.rawMessage]).toEqual([
      Code.FailedPrecondition,
      `run "${runId}" is running: only a run that ended FAILED, CANCELLED or TIMED_OUT can be resumed`,
    ]);
    const fromTask = await rpcError(c.failures.resumeRun({ runId, fromTask: "zz" }));
    expect([fromTask.code, fromTask.rawMessage]).toEqual([
      Code.InvalidArgument,
      `from_task: "zz" is not a task of workflow "${queue}" version 1`,
    ]);
    await c.workflows.cancel({ runId });
  });

  it("retries 2,000 dead letters after an outage: every run succeeds", async () => {
    const queue = `bulk-${randomUUID().slice(0, 8)}`;
    const files = new TestFiles();
    await c.workflows.submitWorkflow({
      definition: {
        name: queue,
        defaultRetry: { maxAttempts: 1 },
        tasks: [task("t", [], { queue, handler: "flaky" })],
      },
    });
    const worker = await spawnWorker({ address: weftd.address, queue, concurrency: 64, env: files.env });
    try {
      for (let i = 0; i < 2; i++) {
        await c.workflows.batchTrigger({
          requests: Array.from({ length: 1000 }, () => ({ workflow: queue })),
        });
      }
      await allFinished(queue, 120_000);
      expect((await runOutcome(c, queue)).byStatus).toEqual({ FAILED: 2000 });
      let listed = 0;
      let pageToken = "";
      do {
        const page = await c.failures.listDeadLetters({ filter: { queue }, pageSize: 1000, pageToken });
        listed += page.deadLetters.length;
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      expect(listed).toBe(2000);

      // The downstream is back: one SDK call retries them all, 500 per RPC.
      files.raiseFlag();
      const sdk = createWeftClient({ address: weftd.address, timeoutMs: 60_000 });
      const calls: number[] = [];
      const totals = await sdk.retryDeadLetters(
        { queue },
        { limit: 500, onProgress: ({ handled }) => calls.push(handled) },
      );
      sdk.close();
      expect(totals).toEqual({ retried: 2000, runsResumed: 2000, skipped: 0 });
      expect(calls.length).toBeGreaterThanOrEqual(4);
      await allFinished(queue, 120_000);
      expect((await runOutcome(c, queue)).byStatus).toEqual({ SUCCEEDED: 2000 });
      expect((await c.failures.listDeadLetters({ filter: { queue } })).deadLetters).toEqual([]);
      const metrics = await (await fetch(`${weftd.metricsUrl}/metrics`)).text();
      expect(metrics).toMatch(new RegExp(`weft_tasks_failed_total\\{queue="${queue}"\\} 2000`));
    } finally {
      await worker.stop();
    }
  }, 300_000);
});

describe("resume across a crash and with timers", () => {
  it("queues the tasks of a resume whose enqueue was lost (the reconciler finishes it)", async () => {
    const queue = `lost-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({
      definition: { name: queue, defaultRetry: { maxAttempts: 1 }, tasks: [task("t", [], { queue })] },
    });
    const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
    const first = (await c.workers.pollTask({ queue, workerId: "w", wait: { seconds: 5n } })).assignment;
    await c.workers.failTask({ leaseId: first?.leaseId ?? "", error: { type: "Down" }, retryable: false });
    expect((await c.workflows.getRun({ runId })).run?.status).toBe(RunStatus.FAILED);
    expect((await c.failures.resumeRun({ runId })).resumed).toBe(true);
    // As if weftd died between the resume's step and its enqueue: the job is gone from BullMQ.
    const raw = redis.client();
    const base = `${weftd.prefix}:q:{${queue}}:${queue}`;
    await raw.lrem(`${base}:wait`, 0, `${runId}.t`);
    await raw.del(`${base}:${runId}.t`);
    raw.disconnect();
    const files = new TestFiles();
    const worker = await spawnWorker({ address: weftd.address, queue, env: files.env });
    try {
      await waitFor(async () => (await c.workflows.getRun({ runId })).run?.status === RunStatus.SUCCEEDED, {
        message: "the reconciler to queue the resumed task again",
        timeoutMs: 20_000,
      });
      expect(
        weftd.logs.some((l) => l.msg === "re-enqueued tasks a crash left without a job" && l.runId === runId),
      ).toBe(true);
      expect(files.starts(runId)).toEqual({ t: 1 });
    } finally {
      await worker.stop();
    }
  }, 60_000);

  it("a resumed run's timeout and schedule-to-start run from the resume, not from the start", async () => {
    const queue = `timers-${randomUUID().slice(0, 8)}`;
    const idle = `${queue}-idle`;
    const files = new TestFiles();
    // a (flaky) → b (gated), and c, on a queue no worker polls, with a schedule-to-start timeout.
    await c.workflows.submitWorkflow({
      definition: {
        name: queue,
        runTimeout: durationFromMs(4000),
        defaultRetry: { maxAttempts: 1 },
        tasks: [
          task("a", [], { queue, handler: "flaky" }),
          task("b", ["a"], { queue, handler: "gated" }),
          task("c", [], { queue: idle, timeouts: { scheduleToStart: durationFromMs(3000) } }),
        ],
      },
    });
    const worker = await spawnWorker({ address: weftd.address, queue, env: files.env });
    try {
      const t0 = Date.now();
      const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
      await waitFor(async () => (await c.workflows.getRun({ runId })).run?.status === RunStatus.FAILED, {
        message: "the run to fail at a",
      });
      // Resumed 2 s in: the run timeout (4 s) and c's schedule-to-start (3 s) start again from here.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, t0 + 2000 - Date.now())));
      files.raiseFlag();
      const resumedAt = Date.now();
      expect((await c.failures.resumeRun({ runId })).resumed).toBe(true);
      // Past the first round's deadlines (4 s and 3 s from the start), with some slack: still running.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, t0 + 4400 - Date.now())));
      const mid = (await c.workflows.getRun({ runId })).run;
      if (Date.now() < resumedAt + 2900) {
        expect(mid?.status).toBe(RunStatus.RUNNING);
        expect(mid?.tasks.find((t) => t.taskId === "c")?.status).toBe(TaskStatus.QUEUED);
      }
      // c's own deadline comes (nobody polls its queue): it fails for good, the run with it.
      const done = await waitFor(
        async () => {
          const run = (await c.workflows.getRun({ runId })).run;
          return run?.status === RunStatus.FAILED ? run : undefined;
        },
        { message: "c to time out after its new deadline", timeoutMs: 15_000 },
      );
      const c2 = done.tasks.find((t) => t.taskId === "c");
      expect(c2?.error?.type).toBe("ScheduleToStartTimeout");
      expect(timestampMs(c2?.finishTime ?? timestampFromMs(0))).toBeGreaterThanOrEqual(resumedAt + 3000);
      files.openGate();
      await allFinished(queue);
    } finally {
      await worker.stop();
    }
  }, 60_000);
});
