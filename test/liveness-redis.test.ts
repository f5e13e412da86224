import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { type RedisServer, startRedisServer } from "@weft/daemon";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnWeftd, type WeftdProcess, waitFor } from "./support/index.js";
import { expectNoRunRunning, reportFigure, runOutcome } from "./support/liveness.js";
import { type ProtocolWorker, spawnProtocolWorker } from "./support/protocol-worker.js";
import { task, value, type WeftClients, weftClients } from "./support/weft.js";

const RUNS = Number(process.env.WEFT_TEST_LIVENESS_RUNS ?? 300);
const RUNS_PER_SECOND = 60;

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;
const workers: ProtocolWorker[] = [];
const triggerErrors: string[] = [];

beforeAll(async () => {
  redis = await startRedisServer({ persistence: "aof" });
  // Runs whose first tasks a trigger could not queue are checked a second after, not ten.
  weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--reconcile-after", "1s"] });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  if (process.env.WEFT_TEST_DUMP) {
    const { writeFileSync } = await import("node:fs");
    writeFileSync(process.env.WEFT_TEST_DUMP, weftd.output);
    writeFileSync(`${process.env.WEFT_TEST_DUMP}.workers`, JSON.stringify(workers.map((w) => w.events)));
  }
  await Promise.all(workers.map((w) => w.kill()));
  await weftd?.stop();
  await redis?.close();
});

/** Triggers `n` runs at a steady rate, each retried under its idempotency key until it is accepted. */
async function triggerSteadily(workflow: string, n: number, perSecond: number): Promise<void> {
  const started = Date.now();
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const due = started + (i * 1000) / perSecond;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())));
      for (;;) {
        try {
          await c.workflows.trigger({ workflow, input: value({ i }), idempotencyKey: `run-${i}` });
          return;
        } catch (err) {
          const code = ConnectError.from(err).code;
          if (code !== Code.Unavailable)
            triggerErrors.push(`${Code[code]}: ${ConnectError.from(err).rawMessage}`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    }),
  );
}

/** BatchTrigger calls of `size` runs each, one after the other until `stop`; each retried under its keys. */
async function batchesUntil(
  workflow: string,
  size: number,
  stopped: () => boolean,
): Promise<{ durations: number[]; codes: string[]; runs: number }> {
  const durations: number[] = [];
  const codes: string[] = [];
  let batch = 0;
  while (!stopped()) {
    const requests = Array.from({ length: size }, (_, i) => ({
      workflow,
      idempotencyKey: `batch-${batch}-${i}`,
    }));
    for (;;) {
      const started = Date.now();
      try {
        await c.workflows.batchTrigger({ requests });
        durations.push(Date.now() - started);
        codes.push("OK");
        break;
      } catch (err) {
        durations.push(Date.now() - started);
        codes.push(Code[ConnectError.from(err).code]);
        if (ConnectError.from(err).code !== Code.Unavailable) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    batch++;
  }
  return { durations, codes, runs: batch * size };
}

describe("liveness after Redis stops and comes back", () => {
  it("answers every BatchTrigger within a second or two while Redis goes away, and starts every run once", async () => {
    const queue = `batch-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({ definition: { name: queue, tasks: [task("a", [], { queue })] } });
    workers.push(await spawnProtocolWorker({ address: weftd.address, queue, mode: "stream", credits: 64 }));
    let stop = false;
    const load = batchesUntil(queue, 300, () => stop);
    await new Promise((resolve) => setTimeout(resolve, 700));
    await redis.stop();
    await new Promise((resolve) => setTimeout(resolve, 5000));
    await redis.restart();
    await new Promise((resolve) => setTimeout(resolve, 500));
    stop = true;
    const { durations, codes, runs } = await load;
    expect(new Set(codes)).toEqual(new Set(["OK", "Unavailable"]));
    // A call fails within a reconnection attempt or two (at most a second apart), or succeeds:
    // none waits through the 5 s outage for Redis to come back.
    expect(Math.max(...durations.filter((_, i) => codes[i] !== "OK"))).toBeLessThan(2500);
    expect(Math.max(...durations)).toBeLessThan(3000);
    await expectNoRunRunning(c, queue, 60_000);
    expect((await runOutcome(c, queue)).byStatus).toEqual({ SUCCEEDED: runs });
  }, 120_000);

  it("finishes every run of a load on Work streams and polls after Redis is stopped for 5 s", async () => {
    const queue = `chain-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({
      definition: {
        name: queue,
        tasks: [task("a", [], { queue }), task("b", ["a"], { queue }), task("c", ["b"], { queue })],
      },
    });
    for (let i = 0; i < 3; i++)
      workers.push(await spawnProtocolWorker({ address: weftd.address, queue, mode: "stream" }));
    workers.push(await spawnProtocolWorker({ address: weftd.address, queue, mode: "poll", credits: 4 }));
    const load = triggerSteadily(queue, RUNS, RUNS_PER_SECOND);
    // Redis goes away while a third of the load is in: tasks in flight, completions on their way.
    await waitFor(
      () => workers.reduce((n, w) => n + w.events.filter((e) => e.ev === "done").length, 0) >= RUNS,
      {
        message: "a third of the load's tasks to complete",
        timeoutMs: 30_000,
      },
    );
    await redis.stop();
    await new Promise((resolve) => setTimeout(resolve, 5000));
    await redis.restart();
    const backAt = Date.now();
    const doneBefore = workers.reduce((n, w) => n + w.events.filter((e) => e.ev === "done").length, 0);
    await waitFor(
      () => workers.reduce((n, w) => n + w.events.filter((e) => e.ev === "done").length, 0) > doneBefore,
      { message: "a task to complete after Redis is back", timeoutMs: 30_000 },
    );
    reportFigure("Redis back after 5 s: first task completed after", Date.now() - backAt);
    await load;
    expect(triggerErrors).toEqual([]);
    await expectNoRunRunning(c, queue, 60_000);
    const outcome = await runOutcome(c, queue);
    expect(outcome.byStatus).toEqual({ SUCCEEDED: RUNS });
    // Every stream kept receiving work after Redis came back.
    for (const w of workers.slice(0, 3)) {
      const last = w.events.filter((e) => e.ev === "task").at(-1);
      expect(last, `worker ${w.workerId} received no task`).toBeDefined();
    }
  }, 180_000);
});
