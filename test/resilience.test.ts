import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "@weft/daemon";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, waitFor } from "./support/index.js";
import {
  collectEvents,
  describeEvent,
  json,
  pollTask,
  RunStatus,
  TaskStatus,
  task,
  value,
  type WeftClients,
  weftClients,
} from "./support/weft.js";
import { spawnWorker } from "./support/worker-process.js";

interface JournalLine {
  event: string;
  runId: string;
  taskId: string;
  attempt: number;
  pid: number;
}

let redis: RedisServer;
let dir: string;

beforeAll(async () => {
  redis = await startTestRedis();
  dir = mkdtempSync(join(tmpdir(), "weft-resilience-"));
});

afterAll(async () => {
  await redis?.close();
});

function journalOf(file: string): JournalLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as JournalLine);
}

async function waitForStart(file: string, taskId: string, attempt: number): Promise<JournalLine> {
  return waitFor(() => journalOf(file).find((l) => l.taskId === taskId && l.attempt === attempt), {
    message: `task ${taskId} attempt ${attempt} to start in a worker`,
    timeoutMs: 30_000,
  });
}

async function waitForRun(c: WeftClients, runId: string, timeoutMs = 30_000) {
  return waitFor(
    async () => {
      const run = (await c.workflows.getRun({ runId })).run;
      return run !== undefined && run.status !== RunStatus.RUNNING ? run : undefined;
    },
    { message: `run ${runId} to finish`, timeoutMs },
  );
}

/** Each task completed exactly once, from the run's own event log. */
async function completionsPerTask(c: WeftClients, runId: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const e of await collectEvents(c, runId)) {
    if (describeEvent(e).startsWith("TASK_COMPLETED")) counts[e.taskId] = (counts[e.taskId] ?? 0) + 1;
  }
  return counts;
}

describe("whatever dies, no task is lost and none is recorded twice", () => {
  it("delivers a task again when its worker is killed with SIGKILL mid-task", async () => {
    const weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--stalled-interval", "300ms"] });
    const journal = join(dir, `kill-worker-${randomUUID()}.jsonl`);
    const queue = `kill-worker-${randomUUID().slice(0, 8)}`;
    const c = weftClients(weftd.address);
    const first = await spawnWorker({ address: weftd.address, queue, env: { WEFT_TEST_JOURNAL: journal } });
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
      const started = await waitForStart(journal, "b", 1);
      expect(started.pid).toBe(first.pid);
      await first.kill();
      const second = await spawnWorker({
        address: weftd.address,
        queue,
        env: { WEFT_TEST_JOURNAL: journal },
      });
      try {
        const run = await waitForRun(c, runId);
        expect(run.status).toBe(RunStatus.SUCCEEDED);
        const retried = journalOf(journal).find((l) => l.taskId === "b" && l.attempt === 2);
        expect(retried?.pid).toBe(second.pid);
        expect(await completionsPerTask(c, runId)).toEqual({ a: 1, b: 1, c: 1 });
        expect(json(run.tasks.find((t) => t.taskId === "c")?.output)).toMatchObject({
          parents: { b: { task: "b", attempt: 2 } },
        });
      } finally {
        await second.stop();
      }
    } finally {
      await first.kill().catch(() => {});
      await weftd.stop();
    }
  });

  it("completes a run after weftd is killed with SIGKILL mid-run and restarted", async () => {
    const port = await freePort();
    const prefix = `kill-weftd-${randomUUID()}`;
    const args = ["--addr", `127.0.0.1:${port}`, "--stalled-interval", "300ms"];
    let weftd = await spawnWeftd({ redisUrl: redis.url, prefix, args });
    const journal = join(dir, `kill-weftd-${randomUUID()}.jsonl`);
    const queue = `kill-weftd-${randomUUID().slice(0, 8)}`;
    const gate = join(dir, `gate-${randomUUID()}`);
    const worker = await spawnWorker({
      address: weftd.address,
      queue,
      env: { WEFT_TEST_JOURNAL: journal, WEFT_TEST_GATE: gate },
    });
    try {
      const c = weftClients(weftd.address);
      await c.workflows.submitWorkflow({
        definition: {
          name: queue,
          tasks: [
            task("a", [], { queue, handler: "add" }),
            task("b", ["a"], { queue, handler: "gated", timeouts: { heartbeat: { seconds: 5n } } }),
            task("c", ["b"], { queue, handler: "echo" }),
            task("d", ["b"], { queue, handler: "echo" }),
          ],
        },
      });
      const runId = (await c.workflows.trigger({ workflow: queue, input: value(10) })).run?.id ?? "";
      await waitForStart(journal, "b", 1);
      await weftd.kill();
      weftd = await spawnWeftd({ redisUrl: redis.url, prefix, args });
      // The worker is mid-task while weftd is down; once it is back the task finishes.
      writeFileSync(gate, "open");
      const restarted = weftd;
      const run = await waitForRun(weftClients(weftd.address), runId, 40_000).catch((err: Error) => {
        throw new Error(`${err.message}\nthe restarted weftd's output:\n${restarted.output.slice(-20_000)}`);
      });
      expect(run.status).toBe(RunStatus.SUCCEEDED);
      expect(await completionsPerTask(weftClients(weftd.address), runId)).toEqual({ a: 1, b: 1, c: 1, d: 1 });
      expect(json(run.output)).toMatchObject({ c: { parents: { b: { attempt: 1 } } }, d: { task: "d" } });
    } finally {
      await worker.stop();
      await weftd.stop();
    }
  });

  it("hands out again, within seconds, a job a killed weftd had fetched for its next poll", async () => {
    const prefix = `held-${randomUUID()}`;
    const args = ["--stalled-interval", "300ms"];
    const inspect = redis.client();
    try {
      // A completion on a queue with a backlog fetches the next job and holds it for the next poll
      // for a moment; weftd is killed right after the completion, mostly within that moment.
      let held: { queue: string; runId: string; lease: string } | undefined;
      for (let attempt = 0; attempt < 5 && held === undefined; attempt++) {
        const weftd = await spawnWeftd({ redisUrl: redis.url, prefix, args });
        const c = weftClients(weftd.address);
        const queue = `held-${randomUUID().slice(0, 8)}`;
        await c.workflows.submitWorkflow({
          definition: { name: queue, tasks: ["t0", "t1", "t2"].map((id) => task(id, [], { queue })) },
        });
        const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
        const { assignment, moreAssignments } = await c.workers.pollTask({
          queue,
          workerId: "w",
          maxTasks: 2,
          wait: { seconds: 10n },
        });
        const [first, second] = [assignment, ...moreAssignments];
        expect([first?.taskId, second?.taskId].sort()).toEqual(["t0", "t1"]);
        await c.workers.completeTask({ leaseId: first?.leaseId ?? "", output: value(1) });
        await weftd.kill();
        const lock = `${prefix}:q:{${queue}}:${queue}:${runId}.t2:lock`;
        const ttl = await inspect.pttl(lock);
        if (ttl > 0) {
          // Held under the short lock, not a lease's (the heartbeat timeout, 30 s, plus a grace).
          expect(ttl).toBeLessThanOrEqual(2000);
          held = { queue, runId, lease: second?.leaseId ?? "" };
        }
      }
      if (held === undefined) throw new Error("weftd was never killed while it held a fetched job (5 tries)");

      const weftd = await spawnWeftd({ redisUrl: redis.url, prefix, args });
      try {
        const c = weftClients(weftd.address);
        // Back after the short lock and the stalled check, well within one poll's wait.
        const next = await pollTask(c, held.queue, "after-restart", 10n);
        expect(next.taskId).toBe("t2");
        expect(next.attempt).toBe(1);
        await c.workers.completeTask({ leaseId: next.leaseId, output: value(2) });
        const run = (await c.workflows.getRun({ runId: held.runId })).run;
        expect(run?.tasks.map((t) => `${t.taskId} ${TaskStatus[t.status]}`)).toEqual([
          "t0 SUCCEEDED",
          `t1 RUNNING`,
          "t2 SUCCEEDED",
        ]);
        // The lease the killed weftd handed out still holds: its worker finishes, and so does the run.
        await c.workers.completeTask({ leaseId: held.lease, output: value(3) });
        expect((await c.workflows.getRun({ runId: held.runId })).run?.status).toBe(RunStatus.SUCCEEDED);
      } finally {
        await weftd.stop();
      }
    } finally {
      inspect.disconnect();
    }
  });

  it("serves one run from two weftd replicas on one Redis", async () => {
    const prefix = `replicas-${randomUUID()}`;
    const one = await spawnWeftd({ redisUrl: redis.url, prefix });
    const two = await spawnWeftd({ redisUrl: redis.url, prefix });
    const queue = `replicas-${randomUUID().slice(0, 8)}`;
    const c1 = weftClients(one.address);
    const c2 = weftClients(two.address);
    try {
      await c1.workflows.submitWorkflow({
        definition: {
          name: queue,
          tasks: [
            task("start", [], { queue }),
            ...Array.from({ length: 3 }, (_, i) => task(`p${i}`, ["start"], { queue })),
            task("end", ["p0", "p1", "p2"], { queue }),
          ],
        },
      });
      const runId = (await c1.workflows.trigger({ workflow: queue })).run?.id ?? "";
      const watched = collectEvents(c2, runId);
      // Leased through replica one, completed through replica two, and the other way round.
      const start = await pollTask(c1, queue, "via-one");
      await c2.workers.completeTask({ leaseId: start.leaseId, output: value("s") });
      for (let i = 0; i < 3; i++) {
        const [poller, completer] = i % 2 === 0 ? [c2, c1] : [c1, c2];
        const t = await pollTask(poller, queue, i % 2 === 0 ? "via-two" : "via-one");
        expect((await completer.workers.heartbeat({ leaseId: t.leaseId })).cancelRequested).toBe(false);
        await completer.workers.completeTask({ leaseId: t.leaseId, output: value(t.taskId) });
      }
      const end = await pollTask(c2, queue, "via-two");
      expect(Object.keys(end.parentOutputs).sort()).toEqual(["p0", "p1", "p2"]);
      await c1.workers.completeTask({ leaseId: end.leaseId, output: value("done") });
      const events = await watched;
      expect(describeEvent(events[events.length - 1]!)).toBe("RUN_FINISHED SUCCEEDED");
      expect(events.map((e) => Number(e.sequence))).toEqual(events.map((_, i) => i + 1));
      const run = (await c1.workflows.getRun({ runId })).run;
      expect(new Set(run?.tasks.map((t) => t.workerId))).toEqual(new Set(["via-one", "via-two"]));
      expect(await completionsPerTask(c2, runId)).toEqual({ start: 1, p0: 1, p1: 1, p2: 1, end: 1 });

      // Worker processes on each replica share the queue's work.
      const w1 = await spawnWorker({ address: one.address, queue, workerId: "proc-one", concurrency: 2 });
      const w2 = await spawnWorker({ address: two.address, queue, workerId: "proc-two", concurrency: 2 });
      try {
        const runs = await Promise.all(
          Array.from(
            { length: 6 },
            async () => (await c1.workflows.trigger({ workflow: queue })).run?.id ?? "",
          ),
        );
        const finished = await Promise.all(runs.map((id) => waitForRun(c2, id)));
        expect(finished.map((r) => RunStatus[r.status])).toEqual(Array(6).fill("SUCCEEDED"));
        const workers = new Set(finished.flatMap((r) => r.tasks.map((t) => t.workerId)));
        expect(workers).toEqual(new Set(["proc-one", "proc-two"]));
      } finally {
        await Promise.all([w1.stop(), w2.stop()]);
      }
    } finally {
      await Promise.all([one.stop(), two.stop()]);
    }
  });
});
