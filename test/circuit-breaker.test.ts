import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { durationFromMs, type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { type Circuit, CircuitState } from "@weft/sdk/gen/weft/v1/circuit_breaker_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, waitFor } from "./support/index.js";
import { TestFiles } from "./support/journal.js";
import { expectNoRunRunning } from "./support/liveness.js";
import {
  EventType,
  RunStatus,
  rpcError,
  TaskStatus,
  task,
  type WeftClients,
  weftClients,
} from "./support/weft.js";
import { spawnWorker } from "./support/worker-process.js";

let redis: RedisServer;

beforeAll(async () => {
  redis = await startTestRedis();
});

afterAll(async () => {
  await redis?.close();
});

const OPEN_MS = 3000;

/** The circuit of `handler` ("" for the whole queue's) as GetQueue shows it. */
async function circuit(c: WeftClients, queue: string, handler: string): Promise<Circuit | undefined> {
  const q = (await c.admin.getQueue({ name: queue })).queue;
  return q?.circuits.find((x) => x.handler === handler);
}

async function waitState(
  c: WeftClients,
  queue: string,
  handler: string,
  state: CircuitState,
  opened?: bigint,
) {
  return waitFor(
    async () => {
      const cur = await circuit(c, queue, handler);
      return cur?.state === state && (opened === undefined || cur.openedCount === opened) ? cur : undefined;
    },
    {
      message: `circuit "${handler}" of ${queue} to be ${CircuitState[state]}`,
      timeoutMs: 20_000,
      intervalMs: 50,
    },
  );
}

/** One-task workflows of each handler on the queue: no retry, so that each failure is final. */
async function workflows(c: WeftClients, queue: string): Promise<{ flaky: string; echo: string }> {
  const names = { flaky: `${queue}-flaky`, echo: `${queue}-echo` };
  for (const [handler, name] of Object.entries(names)) {
    await c.workflows.submitWorkflow({
      definition: { name, defaultRetry: { maxAttempts: 1 }, tasks: [task("t", [], { queue, handler })] },
    });
  }
  return names;
}

async function trigger(c: WeftClients, workflow: string, n: number): Promise<string[]> {
  const { responses } = await c.workflows.batchTrigger({
    requests: Array.from({ length: n }, () => ({ workflow })),
  });
  return responses.map((r) => r.run?.id ?? "");
}

/** When each run's one task started (weftd's clock), for the runs that started it. */
async function starts(c: WeftClients, runIds: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const runId of runIds) {
    const t = (await c.workflows.getRun({ runId })).run?.tasks[0];
    if (t?.startTime !== undefined) out.set(runId, timestampMs(t.startTime));
  }
  return out;
}

describe("circuit breakers", () => {
  it("holds back a failing handler's tasks while open, lets one probe through, and closes on its success", async () => {
    const weftd = await spawnWeftd({ redisUrl: redis.url });
    const c = weftClients(weftd.address);
    const queue = `cb-${randomUUID().slice(0, 8)}`;
    const files = new TestFiles();
    const names = await workflows(c, queue);
    await c.admin.updateQueue({
      name: queue,
      circuitBreaker: {
        perHandler: true,
        failureThreshold: 3,
        window: durationFromMs(60_000),
        openDuration: durationFromMs(OPEN_MS),
        halfOpenProbes: 1,
      },
    });
    const worker = await spawnWorker({ address: weftd.address, queue, concurrency: 1, env: files.env });
    try {
      // Three failures open the handler's circuit.
      const first = await trigger(c, names.flaky, 3);
      const opened = await waitState(c, queue, "flaky", CircuitState.OPEN, 1n);
      expect(opened.manual).toBe(false);
      const openedAt = timestampMs(opened.since as Timestamp);
      const openUntil = timestampMs(opened.openUntil as Timestamp);
      expect(openUntil - openedAt).toBe(OPEN_MS);

      // While it is open: the handler's new tasks wait (and say why), the queue's other handler flows.
      const held = await trigger(c, names.flaky, 3);
      const others = await trigger(c, names.echo, 3);
      for (const runId of others) {
        await waitFor(async () => (await c.workflows.getRun({ runId })).run?.status === RunStatus.SUCCEEDED, {
          message: `echo run ${runId} to succeed while the flaky circuit is open`,
        });
      }
      const reason = `circuit breaker of handler "flaky" in queue "${queue}" is open`;
      for (const runId of held) {
        const t = await waitFor(
          async () => {
            const x = (await c.workflows.getRun({ runId })).run?.tasks[0];
            return x?.waitingReason === reason ? x : undefined;
          },
          { message: `held task of ${runId} to say why it waits` },
        );
        expect(TaskStatus[t.status]).toBe("QUEUED");
      }
      expect(Date.now()).toBeLessThan(openUntil);
      const queued = await c.workflows.watchRun({ runId: held[0] ?? "" });
      for await (const res of queued) {
        if (res.event?.type === EventType.TASK_WAITING) {
          expect(res.event.message).toBe(reason);
          break;
        }
      }

      // Half-open: one probe (the downstream is still down): it fails and the circuit opens again.
      const reopened = await waitState(c, queue, "flaky", CircuitState.OPEN, 2n);
      const reopenedAt = timestampMs(reopened.since as Timestamp);
      const afterFirst = await starts(c, held);
      expect(afterFirst.size).toBe(1);
      for (const at of afterFirst.values()) {
        expect(at).toBeGreaterThanOrEqual(openUntil);
        expect(at).toBeLessThanOrEqual(reopenedAt);
      }

      // The downstream is back: the next probe succeeds, the circuit closes, the held tasks run.
      files.raiseFlag();
      const closed = await waitState(c, queue, "flaky", CircuitState.CLOSED);
      expect(timestampMs(closed.since as Timestamp)).toBeGreaterThanOrEqual(
        timestampMs(reopened.openUntil as Timestamp),
      );
      for (const runId of held) {
        await waitFor(async () => (await c.workflows.getRun({ runId })).run?.status !== RunStatus.RUNNING, {
          message: `held run ${runId} to finish once the circuit closed`,
          timeoutMs: 20_000,
        });
      }
      const outcomes = await Promise.all(
        held.map(async (runId) => (await c.workflows.getRun({ runId })).run?.status),
      );
      // The failed probe's run failed; the other two succeeded.
      expect(outcomes.filter((s) => s === RunStatus.SUCCEEDED).length).toBe(2);
      // No flaky task started while the circuit was open (the first three started before it opened).
      const all = await starts(c, [...first, ...held]);
      for (const at of all.values()) {
        expect(at >= openedAt && at < openUntil).toBe(false);
        expect(at > reopenedAt && at < timestampMs(reopened.openUntil as Timestamp)).toBe(false);
      }
      const metrics = await (await fetch(`${weftd.metricsUrl}/metrics`)).text();
      expect(metrics).toContain(
        `weft_circuit_transitions_total{queue="${queue}",handler="flaky",to="open"} 2`,
      );
      expect(metrics).toContain(
        `weft_circuit_transitions_total{queue="${queue}",handler="flaky",to="closed"} 1`,
      );
      await waitFor(
        async () =>
          (await (await fetch(`${weftd.metricsUrl}/metrics`)).text()).includes(
            `weft_circuit_state{queue="${queue}",handler="flaky"} 0`,
          ),
        { message: "the circuit's state on /metrics" },
      );
      await expectNoRunRunning(c, names.flaky, 20_000);
      await expectNoRunRunning(c, names.echo, 20_000);
    } finally {
      await worker.stop();
      await weftd.stop();
    }
  }, 120_000);

  it("holds a whole queue across two replicas: polls get nothing while open; one probe; open and close by hand", async () => {
    const prefix = `cb2-${randomUUID()}`;
    const [one, two] = await Promise.all([
      spawnWeftd({ redisUrl: redis.url, prefix }),
      spawnWeftd({ redisUrl: redis.url, prefix }),
    ]);
    const c1 = weftClients(one.address);
    const c2 = weftClients(two.address);
    const queue = `cbq-${randomUUID().slice(0, 8)}`;
    const files = new TestFiles();
    const names = await workflows(c1, queue);
    // Set through one replica, in force on both.
    await c1.admin.updateQueue({
      name: queue,
      circuitBreaker: { failureThreshold: 2, openDuration: durationFromMs(OPEN_MS) },
    });
    const worker = await spawnWorker({ address: one.address, queue, concurrency: 1, env: files.env });
    try {
      await trigger(c2, names.flaky, 2);
      const opened = await waitState(c2, queue, "", CircuitState.OPEN, 1n);
      const openUntil = timestampMs(opened.openUntil as Timestamp);
      // Tasks of both handlers wait; a poll through the other replica gets none of them.
      const held = [...(await trigger(c2, names.echo, 2)), ...(await trigger(c2, names.flaky, 1))];
      // The poll ends well before the circuit may let a probe through: it gets nothing.
      const waitMs = Math.max(1, Math.min(1000, openUntil - Date.now() - 500));
      const poll = await c2.workers.pollTask({ queue, workerId: "watcher", wait: durationFromMs(waitMs) });
      expect(poll.assignment).toBeUndefined();

      // Half-open on both replicas: one probe only; the flag is up, so it succeeds and closes the circuit.
      files.raiseFlag();
      const closed = await waitState(c2, queue, "", CircuitState.CLOSED);
      const startTimes = [...(await starts(c2, held)).values()].sort((a, b) => a - b);
      // None started while it was open.
      for (const at of startTimes) expect(at).toBeGreaterThanOrEqual(openUntil);
      // The probe started first, alone; the others once the circuit closed.
      expect(startTimes.length).toBeGreaterThanOrEqual(1);
      expect(startTimes.filter((at) => at < timestampMs(closed.since as Timestamp)).length).toBe(1);
      for (const runId of held) {
        await waitFor(
          async () => (await c2.workflows.getRun({ runId })).run?.status === RunStatus.SUCCEEDED,
          {
            message: `held run ${runId} to succeed`,
            timeoutMs: 20_000,
          },
        );
      }

      // By hand, through one replica: open (polls through the other get nothing), then close.
      await c1.admin.setCircuitState({ queue, state: CircuitState.OPEN });
      const manual = await waitState(c2, queue, "", CircuitState.OPEN);
      expect([manual.manual, manual.openUntil]).toEqual([true, undefined]);
      const waiting = await trigger(c2, names.echo, 1);
      const none = await c2.workers.pollTask({ queue, workerId: "manual", wait: { seconds: 1n } });
      expect(none.assignment).toBeUndefined();
      await c1.admin.setCircuitState({ queue, state: CircuitState.CLOSED });
      await waitFor(
        async () =>
          (await c2.workflows.getRun({ runId: waiting[0] ?? "" })).run?.status === RunStatus.SUCCEEDED,
        { message: "the task held by hand to run once the circuit is closed", timeoutMs: 20_000 },
      );
      await expectNoRunRunning(c1, names.flaky, 20_000);
      await expectNoRunRunning(c1, names.echo, 20_000);
    } finally {
      await worker.stop();
      await Promise.all([one.stop(), two.stop()]);
    }
  }, 120_000);

  it("takes a queue's settings from the configuration file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-cb-"));
    const queue = `cbc-${randomUUID().slice(0, 8)}`;
    writeFileSync(
      join(dir, "weft.yaml"),
      `queues:\n  ${queue}:\n    circuitBreaker: { perHandler: true, failureThreshold: 7, openDuration: 45s }\n`,
    );
    const weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--config", join(dir, "weft.yaml")] });
    try {
      const q = (await weftClients(weftd.address).admin.getQueue({ name: queue })).queue;
      expect(q?.circuitBreaker).toMatchObject({
        perHandler: true,
        failureThreshold: 7,
        window: { seconds: 60n },
        openDuration: { seconds: 45n },
        halfOpenProbes: 1,
      });
      expect(q?.circuits).toEqual([]);
    } finally {
      await weftd.stop();
    }
  });

  it("takes its settings from a workflow's defaults, and refuses bad settings naming the field", async () => {
    const weftd = await spawnWeftd({ redisUrl: redis.url });
    const c = weftClients(weftd.address);
    try {
      const queue = `cbd-${randomUUID().slice(0, 8)}`;
      const bad = await rpcError(
        c.workflows.submitWorkflow({
          definition: {
            name: queue,
            defaultCircuitBreaker: { failureThreshold: -1, openDuration: { seconds: -1n } },
            tasks: [task("t", [], { queue })],
          },
        }),
      );
      expect([bad.code, bad.rawMessage]).toEqual([
        Code.InvalidArgument,
        "definition.default_circuit_breaker.failure_threshold: must be between 0 (the default) and 1000000; " +
          "definition.default_circuit_breaker.open_duration: is not a valid duration",
      ]);
      const update = await rpcError(
        c.admin.updateQueue({
          name: queue,
          circuitBreaker: { halfOpenProbes: -2 },
          clearCircuitBreaker: true,
        }),
      );
      expect([update.code, update.rawMessage]).toEqual([
        Code.InvalidArgument,
        "circuit_breaker.half_open_probes: must be between 0 (the default) and 1000000; " +
          "clear_circuit_breaker: cannot be set together with circuit_breaker",
      ]);
      const state = await rpcError(c.admin.setCircuitState({ queue, state: CircuitState.HALF_OPEN }));
      expect([state.code, state.rawMessage]).toEqual([
        Code.InvalidArgument,
        "state: must be CIRCUIT_STATE_OPEN or CIRCUIT_STATE_CLOSED",
      ]);
      const openFor = await rpcError(
        c.admin.setCircuitState({ queue, state: CircuitState.CLOSED, openFor: durationFromMs(5) }),
      );
      expect(openFor.rawMessage).toBe("open_for: is only for state CIRCUIT_STATE_OPEN");
      const unknown = await rpcError(
        c.admin.setCircuitState({ queue: "never-seen-queue", state: CircuitState.OPEN }),
      );
      expect([unknown.code, unknown.rawMessage]).toEqual([
        Code.NotFound,
        'queue "never-seen-queue" not found',
      ]);

      // A workflow's default applies to its tasks' queue: two failures open it.
      await c.workflows.submitWorkflow({
        definition: {
          name: queue,
          defaultRetry: { maxAttempts: 1 },
          defaultCircuitBreaker: { failureThreshold: 2, openDuration: durationFromMs(60_000) },
          tasks: [task("t", [], { queue, handler: "flaky" })],
        },
      });
      const files = new TestFiles();
      const worker = await spawnWorker({ address: weftd.address, queue, concurrency: 1, env: files.env });
      try {
        await trigger(c, queue, 2);
        await waitState(c, queue, "", CircuitState.OPEN, 1n);
        const [held] = await trigger(c, queue, 1);
        await waitFor(
          async () =>
            ((await c.workflows.getRun({ runId: held ?? "" })).run?.tasks[0]?.waitingReason ?? "") !== "",
          { message: "the task to wait for the circuit" },
        );
        // Closed by hand: the held task runs (and fails: the flag is down), the run ends.
        await c.admin.setCircuitState({ queue, state: CircuitState.CLOSED });
        await expectNoRunRunning(c, queue, 20_000);
      } finally {
        await worker.stop();
      }
    } finally {
      await weftd.stop();
    }
  }, 120_000);
});
