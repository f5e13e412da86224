import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type RedisServer,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
  waitFor,
  within,
} from "./support/index.js";
import { expectNoRunRunning, reportFigure, runOutcome } from "./support/liveness.js";
import { type ProtocolWorker, spawnProtocolWorker } from "./support/protocol-worker.js";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.js";
import { EventType, pollTask, task, weftClients } from "./support/weft.js";

/**
 * What the README promises for a job a dead replica had fetched but not started: free again after
 * the short fetch lock (2 s) plus the next stalled check (5 s by default), then handed out.
 */
const STRANDED_BOUND_MS = 2000 + 5000 + 1500;

let redis: RedisServer;
let proxy: TcpProxy;
let survivor: WeftdProcess;
const workers: ProtocolWorker[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  proxy = await startTcpProxy({ host: "127.0.0.1", port: redis.port });
  survivor = await spawnWeftd({ redisUrl: redis.url, prefix: `replicas-${randomUUID()}` });
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await survivor?.stop();
  await proxy?.close();
  await redis?.close();
});

describe("a replica killed with a task in hand", () => {
  it("frees a job it had fetched for a Work stream but not started within seconds, not a lease's length", async () => {
    // The replica to kill reaches Redis through the proxy. Its own client is held silent, so that it
    // fetches the job for its stream's poll (BullMQ's connections pass) and cannot start the task.
    const doomed = await spawnWeftd({ redisUrl: `redis://127.0.0.1:${proxy.port}`, prefix: survivor.prefix });
    const c = weftClients(survivor.address);
    const queue = `stranded-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({ definition: { name: queue, tasks: [task("a", [], { queue })] } });
    const onDoomed = await spawnProtocolWorker({
      address: doomed.address,
      queue,
      mode: "stream",
      credits: 1,
    });
    workers.push(onDoomed);
    proxy.fault("blackhole", /setname weftd:/i);
    await c.workflows.trigger({ workflow: queue });
    await waitFor(
      async () => {
        const { queue: q } = await c.admin.getQueue({ name: queue });
        return q !== undefined && q.active === 1n && q.waiting === 0n;
      },
      { message: "the doomed replica to fetch the job", timeoutMs: 10_000 },
    );
    await doomed.kill();
    const killedAt = Date.now();
    proxy.heal();
    const onSurvivor = await spawnProtocolWorker({
      address: survivor.address,
      queue,
      mode: "stream",
      credits: 1,
    });
    workers.push(onSurvivor);
    await waitFor(() => onSurvivor.events.some((e) => e.ev === "task"), {
      message: "the task to start on the surviving replica",
      timeoutMs: 45_000,
    });
    reportFigure("replica killed with a fetched job: job started again after", Date.now() - killedAt);
    expect(Date.now() - killedAt).toBeLessThanOrEqual(STRANDED_BOUND_MS);
    expect(onSurvivor.events.find((e) => e.ev === "task")?.attempt).toBe(1);
    await expectNoRunRunning(c, queue, 10_000);
    expect((await runOutcome(c, queue)).byStatus).toEqual({ SUCCEEDED: 1 });
  });

  it("gives a watcher the run's last event when the replica serving it could not read it at first", async () => {
    // The watcher's replica hears of new events (its subscriber passes) but cannot read them: its
    // own client is reset until the run has ended on the other replica.
    const watching = await spawnWeftd({
      redisUrl: `redis://127.0.0.1:${proxy.port}`,
      prefix: survivor.prefix,
    });
    try {
      const c = weftClients(survivor.address);
      const queue = `watched-${randomUUID().slice(0, 8)}`;
      await c.workflows.submitWorkflow({ definition: { name: queue, tasks: [task("a", [], { queue })] } });
      const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
      const events: string[] = [];
      const watch = (async () => {
        for await (const res of weftClients(watching.address).workflows.watchRun({ runId })) {
          if (res.event !== undefined) events.push(EventType[res.event.type]);
        }
      })();
      await waitFor(() => events.includes("TASK_QUEUED"), { message: "the watcher to see the run start" });
      proxy.fault("reset", /setname weftd:/i);
      const t = await pollTask(c, queue);
      await c.workers.completeTask({ leaseId: t.leaseId });
      await watching.waitForLog(
        (l) => l.msg.startsWith("redis unreachable"),
        "the watcher's replica to lose its client",
      );
      // The cut lasts 2 s past the run's end: the read its last event announces fails.
      await new Promise((resolve) => setTimeout(resolve, 2000));
      proxy.heal();
      await within(watch, 15_000, "the watch to end with the run's last event");
      expect(events.slice(-3)).toEqual(["TASK_STARTED", "TASK_COMPLETED", "RUN_FINISHED"]);
    } finally {
      proxy.heal();
      await watching.stop();
    }
  });
});
