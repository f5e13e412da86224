/**
 * Workers of the three runtimes on one daemon: a workflow whose tasks hop TypeScript → Python → Go
 * → TypeScript with outputs flowing between languages, and SIGKILL of a Python and of a Go worker
 * mid-task.
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Runtime, spawnRuntimeWorker } from "./fixtures/runtimes.js";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import {
  collectEvents,
  describeEvent,
  json,
  RunStatus,
  task,
  value,
  type WeftClients,
  weftClients,
} from "./support/weft.js";

interface JournalLine {
  event: string;
  runId: string;
  taskId: string;
  attempt: number;
  pid: number;
}

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;
let dir: string;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--stalled-interval", "300ms"] });
  c = weftClients(weftd.address);
  dir = mkdtempSync(join(tmpdir(), "weft-polyglot-"));
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

function journalOf(file: string): JournalLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as JournalLine);
}

async function waitForRun(runId: string, timeoutMs = 30_000) {
  return waitFor(
    async () => {
      const run = (await c.workflows.getRun({ runId })).run;
      return run !== undefined && run.status !== RunStatus.RUNNING ? run : undefined;
    },
    { message: `run ${runId} to finish`, timeoutMs },
  );
}

async function completionsPerTask(runId: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const e of await collectEvents(c, runId)) {
    if (describeEvent(e).startsWith("TASK_COMPLETED")) counts[e.taskId] = (counts[e.taskId] ?? 0) + 1;
  }
  return counts;
}

describe("one workflow across TypeScript, Python and Go workers", () => {
  it("passes outputs TS → Python → Go → TS, each task run by its language's worker", async () => {
    const id = randomUUID().slice(0, 8);
    const queues = { ts: `ts-${id}`, py: `py-${id}`, go: `go-${id}` };
    const workers = await Promise.all([
      spawnRuntimeWorker("typescript", { address: weftd.address, queue: queues.ts, workerId: `ts-${id}` }),
      spawnRuntimeWorker("python", { address: weftd.address, queue: queues.py, workerId: `py-${id}` }),
      spawnRuntimeWorker("go", {
        address: weftd.address,
        queue: queues.go,
        workerId: `go-${id}`,
        startTimeoutMs: 120_000,
      }),
    ]);
    try {
      const payload = { text: "naïve café ✓", numbers: [1, 2.5, -3], nested: { ok: true, none: null } };
      await c.workflows.submitWorkflow({
        definition: {
          name: `polyglot-${id}`,
          tasks: [
            task("ts1", [], { queue: queues.ts, handler: "add" }),
            task("py", ["ts1"], { queue: queues.py, handler: "add" }),
            task("go", ["py"], { queue: queues.go, handler: "add" }),
            task("ts2", ["go"], { queue: queues.ts, handler: "echo", input: value(payload) }),
            task("pyEcho", ["ts2"], { queue: queues.py, handler: "echo" }),
            task("goEcho", ["pyEcho"], { queue: queues.go, handler: "echo" }),
          ],
        },
      });
      const runId =
        (await c.workflows.trigger({ workflow: `polyglot-${id}`, input: value(10) })).run?.id ?? "";
      const run = await waitForRun(runId);
      expect(RunStatus[run.status]).toBe("SUCCEEDED");
      const byTask = Object.fromEntries(run.tasks.map((t) => [t.taskId, t]));
      expect(Object.fromEntries(run.tasks.map((t) => [t.taskId, t.workerId]))).toEqual({
        ts1: `ts-${id}`,
        py: `py-${id}`,
        go: `go-${id}`,
        ts2: `ts-${id}`,
        pyEcho: `py-${id}`,
        goEcho: `go-${id}`,
      });
      expect(["ts1", "py", "go"].map((t) => json(byTask[t]?.output))).toEqual([11, 12, 13]);
      const ts2 = { task: "ts2", input: payload, parents: { go: 13 } };
      const pyEcho = { task: "pyEcho", input: null, parents: { ts2 } };
      expect(json(byTask.ts2?.output)).toEqual(ts2);
      expect(json(run.output)).toEqual({ goEcho: { task: "goEcho", input: null, parents: { pyEcho } } });
      expect(await completionsPerTask(runId)).toEqual({ ts1: 1, py: 1, go: 1, ts2: 1, pyEcho: 1, goEcho: 1 });
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
  });
});

describe("a worker killed with SIGKILL mid-task", () => {
  it.each<Runtime>(["python", "go"])(
    "%s: the task is delivered again and the run succeeds with each task recorded once",
    async (runtime) => {
      const id = randomUUID().slice(0, 8);
      const queue = `kill-${runtime}-${id}`;
      const journal = join(dir, `kill-${runtime}-${id}.jsonl`);
      const env = { WEFT_TEST_JOURNAL: journal };
      const first = await spawnRuntimeWorker(runtime, {
        address: weftd.address,
        queue,
        env,
        startTimeoutMs: 120_000,
      });
      try {
        await c.workflows.submitWorkflow({
          definition: {
            name: queue,
            tasks: [
              task("a", [], { queue, handler: "add" }),
              task("b", ["a"], { queue, handler: "stuckOnce", timeouts: { heartbeat: { seconds: 1n } } }),
              task("c", ["b"], { queue, handler: "echo" }),
            ],
          },
        });
        const runId = (await c.workflows.trigger({ workflow: queue, input: value(1) })).run?.id ?? "";
        const started = await waitFor(
          () => journalOf(journal).find((l) => l.taskId === "b" && l.attempt === 1),
          {
            message: `task b attempt 1 to start in the ${runtime} worker`,
            timeoutMs: 30_000,
          },
        );
        expect(started.pid).toBe(first.pid);
        await first.kill();
        const second = await spawnRuntimeWorker(runtime, { address: weftd.address, queue, env });
        try {
          const run = await waitForRun(runId);
          expect(RunStatus[run.status]).toBe("SUCCEEDED");
          const retried = journalOf(journal).find((l) => l.taskId === "b" && l.attempt === 2);
          expect(retried?.pid).toBe(second.pid);
          expect(await completionsPerTask(runId)).toEqual({ a: 1, b: 1, c: 1 });
          expect(json(run.tasks.find((t) => t.taskId === "c")?.output)).toMatchObject({
            parents: { b: { task: "b", attempt: 2 } },
          });
          const b = run.tasks.find((t) => t.taskId === "b");
          expect([b?.attempt, b?.workerId]).toEqual([2, second.workerId]);
        } finally {
          await second.stop();
        }
      } finally {
        await first.kill().catch(() => {});
      }
    },
  );
});
