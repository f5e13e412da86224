/**
 * The conformance table (workers/conformance/cases.json) run against every worker runtime: for
 * each runtime one weftd, one worker process with the test handlers, and each case's workflow run
 * end to end, with the exact run and task outcome checked through GetRun and WatchRun.
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JsonValue, MessageInitShape } from "@bufbuild/protobuf";
import { freePort } from "@weft/daemon";
import type { TaskDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RUNTIMES, type Runtime, type RuntimeWorker, spawnRuntimeWorker } from "./fixtures/runtimes.js";
import {
  REPO_ROOT,
  type RedisServer,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
  waitFor,
} from "./support/index.js";
import {
  collectEvents,
  describeEvent,
  json,
  RunStatus,
  TaskStatus,
  value,
  type WeftClients,
  weftClients,
} from "./support/weft.js";

type PerRuntime<T> = T | Record<Runtime, T>;

interface ExpectedError {
  type?: PerRuntime<string>;
  message?: string;
  messageIncludes?: string[];
}

interface Case {
  id: string;
  title: string;
  behaviour: string;
  action?: "cancel-while-running" | "freeze-worker-until-lease-expires" | "restart-daemon-while-polling";
  runInput?: JsonValue;
  tasks: {
    id: string;
    handler: string;
    dependsOn?: string[];
    input?: JsonValue;
    heartbeatMs?: number;
    retry?: { maxAttempts?: number; initialBackoffMs?: number };
  }[];
  expect: {
    run: keyof typeof RunStatus;
    runOutput?: JsonValue;
    tasks: Record<
      string,
      { status: keyof typeof TaskStatus; attempt: number; output?: JsonValue; error?: ExpectedError }
    >;
    retryErrors?: Record<string, ExpectedError>;
    journal?: Record<string, JsonValue>[];
    events?: string[];
  };
}

const table = JSON.parse(readFileSync(`${REPO_ROOT}workers/conformance/cases.json`, "utf8")) as {
  cases: Case[];
};

interface JournalLine {
  event: string;
  runId: string;
  taskId: string;
  attempt: number;
  [field: string]: JsonValue;
}

function journalOf(file: string): JournalLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as JournalLine);
}

function ms(n: number) {
  return { seconds: BigInt(Math.floor(n / 1000)), nanos: (n % 1000) * 1_000_000 };
}

function perRuntime<T>(v: PerRuntime<T>, runtime: Runtime): T {
  return typeof v === "object" && v !== null && runtime in (v as object)
    ? (v as Record<Runtime, T>)[runtime]
    : (v as T);
}

let redis: RedisServer;
let dir: string;

beforeAll(async () => {
  redis = await startTestRedis();
  dir = mkdtempSync(join(tmpdir(), "weft-conformance-"));
});

afterAll(async () => {
  await redis?.close();
});

describe.each(RUNTIMES)("the %s runtime", (runtime) => {
  const queue = `conformance-${runtime}-${randomUUID().slice(0, 8)}`;
  const prefix = `conformance-${randomUUID()}`;
  const journal = () => join(dir, `${runtime}.jsonl`);
  const gate = () => join(dir, `${runtime}.gate`);
  let weftdArgs: string[];
  let weftd: WeftdProcess;
  let worker: RuntimeWorker;
  let c: WeftClients;

  beforeAll(async () => {
    weftdArgs = ["--addr", `127.0.0.1:${await freePort()}`, "--stalled-interval", "300ms"];
    weftd = await spawnWeftd({ redisUrl: redis.url, prefix, args: weftdArgs });
    c = weftClients(weftd.address);
    // One poll loop: a case's follow-up task shows that the worker finished the previous one.
    worker = await spawnRuntimeWorker(runtime, {
      address: weftd.address,
      queue,
      concurrency: 1,
      workerId: `conformance-${runtime}`,
      env: { WEFT_TEST_JOURNAL: journal(), WEFT_TEST_GATE: gate() },
      startTimeoutMs: 120_000,
    });
  }, 180_000);

  afterAll(async () => {
    worker?.thaw();
    await worker?.stop();
    await weftd?.stop();
  });

  async function waitForRun(runId: string, timeoutMs = 30_000) {
    return waitFor(
      async () => {
        const run = (await c.workflows.getRun({ runId })).run;
        return run !== undefined && run.status !== RunStatus.RUNNING ? run : undefined;
      },
      { message: `run ${runId} to finish\n${runtime} worker output:\n${worker.output()}`, timeoutMs },
    );
  }

  async function waitForJournal(runId: string, match: Partial<JournalLine>, timeoutMs = 20_000) {
    return waitFor(
      () =>
        journalOf(journal()).find(
          (l) => l.runId === runId && Object.entries(match).every(([k, v]) => l[k] === v),
        ),
      { message: `journal line ${JSON.stringify(match)} of run ${runId}\n${worker.output()}`, timeoutMs },
    );
  }

  /** Runs a one-task workflow of `echo` and waits for it: the worker is free again. */
  async function probe(): Promise<void> {
    const workflow = `probe-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({
      definition: { name: workflow, tasks: [{ id: "p", handler: "echo", queue }] },
    });
    const runId = (await c.workflows.trigger({ workflow })).run?.id ?? "";
    expect(RunStatus[(await waitForRun(runId)).status]).toBe("SUCCEEDED");
  }

  function checkError(actual: { type: string; message: string } | undefined, want: ExpectedError): void {
    expect(actual).toBeDefined();
    if (want.type !== undefined) expect(actual?.type).toBe(perRuntime(want.type, runtime));
    if (want.message !== undefined) expect(actual?.message).toBe(want.message);
    for (const part of want.messageIncludes ?? []) {
      expect(actual?.message).toContain(
        part.replaceAll("{workerId}", worker.workerId).replaceAll("{queue}", queue),
      );
    }
  }

  for (const kase of table.cases) {
    it(`${kase.title} (${kase.id})`, async () => {
      const workflow = `${kase.id}-${runtime}-${randomUUID().slice(0, 8)}`;
      const tasks: MessageInitShape<typeof TaskDefinitionSchema>[] = kase.tasks.map((t) => ({
        id: t.id,
        handler: t.handler,
        queue,
        dependsOn: t.dependsOn ?? [],
        ...(t.input === undefined ? {} : { input: value(t.input) }),
        ...(t.heartbeatMs === undefined ? {} : { timeouts: { heartbeat: ms(t.heartbeatMs) } }),
        ...(t.retry === undefined
          ? {}
          : {
              retry: {
                maxAttempts: t.retry.maxAttempts ?? 0,
                ...(t.retry.initialBackoffMs === undefined
                  ? {}
                  : { initialBackoff: ms(t.retry.initialBackoffMs) }),
              },
            }),
      }));
      await c.workflows.submitWorkflow({ definition: { name: workflow, tasks } });

      if (kase.action === "restart-daemon-while-polling") {
        await weftd.kill();
        weftd = await spawnWeftd({ redisUrl: redis.url, prefix, args: weftdArgs });
        c = weftClients(weftd.address);
      }
      const runId =
        (
          await c.workflows.trigger({
            workflow,
            ...(kase.runInput === undefined ? {} : { input: value(kase.runInput) }),
          })
        ).run?.id ?? "";

      if (kase.action === "cancel-while-running") {
        await waitForJournal(runId, { event: "start", taskId: "a", attempt: 1 });
        const seen = worker.output().length;
        await c.workflows.cancel({ runId, reason: "conformance" });
        await waitFor(() => worker.output().slice(seen).includes('"msg":"run cancelled'), {
          message: `the ${runtime} worker to hear of the cancellation\n${worker.output()}`,
        });
        writeFileSync(gate(), "open");
        await waitForJournal(runId, { event: "end", taskId: "a", attempt: 1 });
        await probe();
      }
      if (kase.action === "freeze-worker-until-lease-expires") {
        await waitForJournal(runId, { event: "start", taskId: "a", attempt: 1 });
        worker.freeze();
        try {
          await waitFor(
            async () => {
              const t = (await c.workflows.getRun({ runId })).run?.tasks.find((x) => x.taskId === "a");
              return t !== undefined && (t.status !== TaskStatus.RUNNING || t.attempt > 1);
            },
            { message: `the lease of task a of run ${runId} to expire` },
          );
        } finally {
          worker.thaw();
        }
      }

      const run = await waitForRun(runId);
      const events = await collectEvents(c, runId);
      const want = kase.expect;
      expect(RunStatus[run.status]).toBe(want.run);
      if (want.runOutput !== undefined) expect(json(run.output)).toEqual(want.runOutput);
      for (const [taskId, t] of Object.entries(want.tasks)) {
        const actual = run.tasks.find((x) => x.taskId === taskId);
        expect(actual, `task ${taskId}`).toBeDefined();
        expect([TaskStatus[actual?.status ?? 0], actual?.attempt]).toEqual([t.status, t.attempt]);
        if (t.output !== undefined) expect(json(actual?.output)).toEqual(t.output);
        if (t.error !== undefined) checkError(actual?.error, t.error);
      }
      for (const [key, err] of Object.entries(want.retryErrors ?? {})) {
        const retry = events.find((e) => describeEvent(e) === `TASK_RETRYING ${key}`);
        checkError(retry?.error, err);
      }
      for (const line of want.journal ?? []) {
        expect(journalOf(journal()).filter((l) => l.runId === runId)).toContainEqual(
          expect.objectContaining(line),
        );
      }
      if (want.events !== undefined) expect(events.map(describeEvent)).toEqual(want.events);
    });
  }
});
