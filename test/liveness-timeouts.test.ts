import { randomUUID } from "node:crypto";
import type { RunEvent } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import { expectNoRunRunning, reportFigure, runOutcome } from "./support/liveness.js";
import { type ProtocolWorker, spawnProtocolWorker } from "./support/protocol-worker.js";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.js";
import { collectEvents, EventType, pollTask, task, type WeftClients, weftClients } from "./support/weft.js";

/**
 * The slack the README documents for timeouts: a timeout fires within 10 % of its length or
 * 250 ms, whichever is larger, after its deadline.
 */
const slackMs = (timeoutMs: number) => Math.max(250, timeoutMs / 10);

let redis: RedisServer;
// The default stalled interval (5 s): timeouts must not wait for it.
let weftd: WeftdProcess;
let c: WeftClients;
const workers: ProtocolWorker[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  // Keepalive shorter than its defaults (10 s + 20 s), so that closing a dead connection is seen soon.
  weftd = await spawnWeftd({
    redisUrl: redis.url,
    args: ["--keepalive-interval", "2s", "--keepalive-timeout", "3s"],
  });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await weftd?.stop();
  await redis?.close();
});

const ms = (t: RunEvent["time"]) => Number(t?.seconds ?? 0n) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);

function eventOf(events: RunEvent[], type: EventType, attempt: number): RunEvent {
  const found = events.find((e) => e.type === type && e.attempt === attempt);
  if (found === undefined) throw new Error(`no ${EventType[type]} event for attempt ${attempt}`);
  return found;
}

async function workflowOf(timeouts: Parameters<typeof task>[2]) {
  const queue = `timeouts-${randomUUID().slice(0, 8)}`;
  await c.workflows.submitWorkflow({
    definition: { name: queue, tasks: [task("a", [], { queue, ...timeouts })] },
  });
  return queue;
}

describe("timeouts fire at their deadline, not at the next stalled check", () => {
  it("ends an attempt at its 2 s start-to-close timeout within the documented slack, while it heartbeats", async () => {
    const queue = await workflowOf({
      retry: { maxAttempts: 1 },
      timeouts: { startToClose: { seconds: 2n } },
    });
    const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
    const t = await pollTask(c, queue);
    // Heartbeats keep the lease alive: only the start-to-close deadline can end the attempt.
    const beating = setInterval(() => void c.workers.heartbeat({ leaseId: t.leaseId }).catch(() => {}), 300);
    try {
      await expectNoRunRunning(c, queue, 15_000);
    } finally {
      clearInterval(beating);
    }
    const events = await collectEvents(c, runId);
    const started = ms(eventOf(events, EventType.TASK_STARTED, 1).time);
    const failed = eventOf(events, EventType.TASK_FAILED, 1);
    expect(failed.error?.type).toBe("StartToCloseTimeout");
    const late = ms(failed.time) - started - 2000;
    reportFigure("start-to-close 2 s: lateness", late);
    expect(late).toBeGreaterThanOrEqual(0);
    expect(late).toBeLessThanOrEqual(slackMs(2000));
  });

  it("ends an attempt whose worker was killed at its 3 s heartbeat timeout within the slack, and retries it", async () => {
    const queue = await workflowOf({ retry: { maxAttempts: 2 }, timeouts: { heartbeat: { seconds: 3n } } });
    // A worker that takes the task and never answers: killed once it has it.
    const doomed = await spawnProtocolWorker({
      address: weftd.address,
      queue,
      mode: "poll",
      credits: 1,
      holdMs: 600_000,
    });
    workers.push(doomed);
    const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
    await waitFor(() => doomed.events.some((e) => e.ev === "task"), {
      message: "the doomed worker to take the task",
    });
    await doomed.kill();
    workers.push(await spawnProtocolWorker({ address: weftd.address, queue, mode: "poll", credits: 1 }));
    await expectNoRunRunning(c, queue, 15_000);
    expect((await runOutcome(c, queue)).byStatus).toEqual({ SUCCEEDED: 1 });
    const events = await collectEvents(c, runId);
    const started = ms(eventOf(events, EventType.TASK_STARTED, 1).time);
    const retried = eventOf(events, EventType.TASK_RETRYING, 1);
    expect(retried.error?.type).toBe("HeartbeatTimeout");
    // No heartbeat was ever sent: the lease's deadline is the attempt's start plus 3 s.
    const late = ms(retried.time) - started - 3000;
    reportFigure("heartbeat timeout 3 s after a kill: lateness", late);
    expect(late).toBeGreaterThanOrEqual(0);
    expect(late).toBeLessThanOrEqual(slackMs(3000));
  });
});

describe("a dead or frozen worker gets no new attempt", () => {
  let proxy: TcpProxy;
  afterAll(async () => proxy?.close());

  it("hands attempt 2 to the live worker, not to the open poll of a worker whose link was cut", async () => {
    proxy = await startTcpProxy({ host: "127.0.0.1", port: weftd.port });
    const queue = await workflowOf({ retry: { maxAttempts: 3 }, timeouts: { heartbeat: { seconds: 3n } } });
    // Three poll loops through the proxy: one takes the task and holds it, two wait for more.
    const cut = await spawnProtocolWorker({
      address: `127.0.0.1:${proxy.port}`,
      queue,
      mode: "poll",
      credits: 3,
      holdMs: 600_000,
      workerId: "cut-off",
    });
    workers.push(cut);
    await c.workflows.trigger({ workflow: queue });
    await waitFor(() => cut.events.some((e) => e.ev === "task"), { message: "the worker to take the task" });
    proxy.fault("blackhole");
    const cutAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 600));
    const live = await spawnProtocolWorker({
      address: weftd.address,
      queue,
      mode: "poll",
      credits: 1,
      workerId: "live",
    });
    workers.push(live);
    await expectNoRunRunning(c, queue, 20_000);
    const { runs } = await c.workflows.listRuns({ workflow: queue });
    const run = (await c.workflows.getRun({ runId: runs[0]?.id ?? "" })).run;
    expect([run?.tasks[0]?.attempt, run?.tasks[0]?.workerId, run?.tasks[0]?.error?.type]).toEqual([
      2,
      "live",
      "HeartbeatTimeout",
    ]);
    // Keepalive (here 2 s interval, 3 s timeout) closes the dead connection, ending its polls.
    const closed = await weftd.waitForLog(
      (l) => l.msg.startsWith("a client did not answer keepalive PINGs"),
      "the cut-off connection to be closed",
      15_000,
    );
    reportFigure("worker link cut: its connection closed after", (closed.time as number) - cutAt);
    expect((closed.time as number) - cutAt).toBeLessThanOrEqual(2000 + 3000 + 1500);
    proxy.heal();
  });
});
