import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { keySlot } from "../daemon/src/redis/slots.js";
import { ChainLoad } from "./support/chain-load.js";
import {
  spawnWeftd,
  startTestCluster,
  startTestSentinel,
  type WeftdProcess,
  waitFor,
} from "./support/index.js";
import { expectNoRunRunning, reportFigure, runOutcome } from "./support/liveness.js";
import { RunStatus, weftClients } from "./support/weft.js";
import { spawnWorker, type WorkerProcess } from "./support/worker-process.js";

const RUNS = 500;

/** Started per second: the load lasts a few seconds, the failover falls in its middle. */
const PACE = 100;

/** The runs started before the kill. */
const BEFORE_KILL = 150;

/** The messages calls may fail with while Redis fails over: weftd's own, never Redis's. */
const UNAVAILABLE_MESSAGES = new Set([
  "Redis is unreachable - try again later",
  "Redis Cluster could not serve the command now (slots moving) - try again later",
]);

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const step of cleanups.splice(0).reverse()) await step().catch(() => {});
});

/**
 * 500 runs of a 3-task chain through two weftd replicas and two worker processes, each run watched
 * to its end; `kill` takes the Redis primary down (kill -9) after 150 runs started, and its replica
 * takes over. Every run must succeed with each task recorded once, every watcher must see every
 * event of its run once and in order (resuming after its last sequence when its stream breaks),
 * and no call may fail otherwise than UNAVAILABLE with weftd's own message.
 */
async function failoverUnderLoad(name: string, redisUrl: string, kill: (queue: string) => Promise<void>) {
  const prefix = `failover-${randomUUID()}`;
  const queue = `chain-${randomUUID().slice(0, 8)}`;
  const args = ["--stalled-interval", "1s", "--reconcile-after", "2s", "--default-heartbeat-timeout", "5s"];
  const replicas: WeftdProcess[] = await Promise.all([
    spawnWeftd({ redisUrl, prefix, args }),
    spawnWeftd({ redisUrl, prefix, args }),
  ]);
  cleanups.push(() => Promise.all(replicas.map((r) => r.stop())));
  const workers: WorkerProcess[] = await Promise.all(
    replicas.map((r) => spawnWorker({ address: r.address, queue, concurrency: 16 })),
  );
  cleanups.push(() => Promise.all(workers.map((w) => w.stop())));
  const clients = replicas.map((r) => weftClients(r.address));
  const load = new ChainLoad({ replicas: clients, queue, runs: RUNS });
  cleanups.push(async () => load.stop());
  await load.submit();

  const started = load.start(PACE);
  await waitFor(() => load.runIds.length >= BEFORE_KILL, { message: `${BEFORE_KILL} runs to start` });
  const killedAt = Date.now();
  await kill(queue);
  await started;
  await load.finished(120_000);
  const recovered = Date.now() - killedAt;

  const window = load.unavailableWindow();
  reportFigure(`${name}: calls failed UNAVAILABLE for (first to last failure)`, window.ms);
  reportFigure(`${name}: the slowest Trigger (its retries included)`, load.slowest.ms);
  reportFigure(`${name}: every run finished after the kill within`, recovered);
  // How long calls failed, for the report: visible in the test's output too.
  console.log(
    `${name}: ${window.calls} calls failed UNAVAILABLE over ${window.ms} ms; the slowest Trigger took ` +
      `${load.slowest.ms} ms (${load.slowest.at - killedAt} ms after the kill); all ${RUNS} runs finished ${recovered} ms after the kill`,
  );

  const c = clients[0] as (typeof clients)[0];
  await expectNoRunRunning(c, queue, 30_000);
  expect((await runOutcome(c, queue)).byStatus).toEqual({ SUCCEEDED: RUNS });
  expect(new Set(load.runIds).size).toBe(RUNS);
  expect(load.problems()).toEqual([]);
  // Each watcher got exactly the run's events: as many as the run's last sequence.
  for (const w of load.watched.slice(0, 50)) {
    const run = (await c.workflows.getRun({ runId: w.runId })).run;
    expect(run?.status).toBe(RunStatus.SUCCEEDED);
    expect(w.sequences.length).toBe(Number(run?.lastSequence));
  }
  const odd = load.failures.filter(
    (f) => f.code !== Code.Unavailable || !UNAVAILABLE_MESSAGES.has(f.message),
  );
  expect(odd).toEqual([]);
  // No replica logged an unexpected error, nor flooded its log while Redis failed over.
  for (const replica of replicas) {
    expect(replica.logs.filter((l) => l.msg === "unexpected error")).toEqual([]);
    const warnings = replica.logs.filter((l) => l.level >= 40 && Number(l.time) >= killedAt);
    expect(warnings.length, JSON.stringify(warnings.slice(0, 5))).toBeLessThan(100);
  }
}

describe("a Redis failover under load", () => {
  it("loses no run, records no task twice and gives every watcher every event once when a Cluster master is killed", async () => {
    const cluster = await startTestCluster({ nodeTimeoutMs: 1000 });
    cleanups.push(() => cluster.close());
    await failoverUnderLoad("Cluster master killed", cluster.url, async (queue) => {
      // The master of the task queue's slot: its jobs, and a third of the runs, move to its replica.
      const master = await cluster.masterOf(keySlot(queue));
      await master.server.kill();
    });
    await cluster.waitHealthy(30_000);
  }, 240_000);

  it("loses no run, records no task twice and gives every watcher every event once when the Sentinel primary is killed", async () => {
    const sentinel = await startTestSentinel({ downAfterMs: 1000 });
    cleanups.push(() => sentinel.close());
    await failoverUnderLoad("Sentinel primary killed", sentinel.url, async () => {
      const primary = await sentinel.primary();
      await primary.kill();
    });
  }, 240_000);
});
