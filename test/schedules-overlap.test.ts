import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OverlapPolicy } from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import { expectNoRunRunning } from "./support/liveness.js";
import { msOf, runsOfSchedule, scheduleClient } from "./support/schedules.js";
import { RunStatus, task, type WeftClients, weftClients } from "./support/weft.js";
import { spawnWorker, type WorkerProcess } from "./support/worker-process.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;
let s: ReturnType<typeof scheduleClient>;
const workers: WorkerProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), "weft-overlap-"));

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
  c = weftClients(weftd.address);
  s = scheduleClient(weftd.address);
});

afterAll(async () => {
  for (const w of workers) await w.stop();
  await weftd?.stop();
  await redis?.close();
});

/**
 * A schedule firing every second on a workflow whose one task is slow: the worker's `gated` handler
 * holds every run until the gate file exists. Returns the schedule id, the workflow, and the gate's opener.
 */
async function slowSchedule(policy: OverlapPolicy) {
  const name = `overlap-${OverlapPolicy[policy].toLowerCase()}-${randomUUID().slice(0, 6)}`;
  const gate = join(dir, `${name}.gate`);
  await c.workflows.submitWorkflow({
    definition: { name, tasks: [task("slow", [], { queue: name, handler: "gated" })] },
  });
  workers.push(await spawnWorker({ address: weftd.address, queue: name, env: { WEFT_TEST_GATE: gate } }));
  const scheduleId = `s-${name}`;
  await s.createSchedule({
    scheduleId,
    spec: { workflow: name, cron: "* * * * * *", overlapPolicy: policy },
  });
  return { scheduleId, name, open: () => writeFileSync(gate, "") };
}

const schedule = async (scheduleId: string) => (await s.getSchedule({ scheduleId })).schedule;

/** Pauses a schedule and lets a fire step that was under way end (steps take milliseconds). */
async function pause(scheduleId: string): Promise<void> {
  await s.pauseSchedule({ scheduleId });
  const pausedAt = Date.now();
  await waitFor(() => Date.now() > pausedAt + 1000, { message: "a fire step under way to end" });
}

describe("overlap policies with a slow worker", () => {
  it("SKIP: fires while the previous run runs start nothing and are counted skipped", async () => {
    const { scheduleId, name, open } = await slowSchedule(OverlapPolicy.SKIP);
    await waitFor(async () => Number((await schedule(scheduleId))?.skippedCount) >= 3, {
      message: "three fires to be skipped",
      timeoutMs: 20_000,
    });
    const runs = await runsOfSchedule(c, scheduleId);
    expect(runs).toHaveLength(1);
    expect(runs[0]?.status).toBe(RunStatus.RUNNING);
    open();
    // Once the slow run ended, the next fire starts a run again.
    await waitFor(async () => (await runsOfSchedule(c, scheduleId)).length >= 2, {
      message: "a fire after the slow run ended to start a run",
      timeoutMs: 20_000,
    });
    await pause(scheduleId);
    await expectNoRunRunning(c, name, 30_000);
    const after = await schedule(scheduleId);
    expect(Number(after?.firedCount)).toBe((await runsOfSchedule(c, scheduleId)).length);
    // The replica's counters say the same (this weftd serves only this file's schedules).
    const text = await (await fetch(`${weftd.metricsUrl}/metrics`)).text();
    const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
    expect(metric("weft_schedule_skips_total")).toBeGreaterThanOrEqual(Number(after?.skippedCount));
    expect(metric("weft_schedule_fires_total")).toBeGreaterThanOrEqual(Number(after?.firedCount));
    expect(metric("weft_schedule_fire_lag_seconds_count")).toBeGreaterThanOrEqual(Number(after?.firedCount));
    expect(metric("weft_schedule_fire_lag_seconds_sum")).toBeGreaterThanOrEqual(0);
    expect(metric("weft_schedule_misses_total")).toBe(0);
  }, 60_000);

  it("BUFFER_ONE: keeps one fire while the previous run runs and starts it when that run ends", async () => {
    const { scheduleId, name, open } = await slowSchedule(OverlapPolicy.BUFFER_ONE);
    await waitFor(async () => Number((await schedule(scheduleId))?.skippedCount) >= 2, {
      message: "a fire to be buffered and two more skipped",
      timeoutMs: 20_000,
    });
    const before = await schedule(scheduleId);
    const buffered = msOf(before?.bufferedFireTime);
    const [firstRun] = await runsOfSchedule(c, scheduleId);
    expect((await runsOfSchedule(c, scheduleId)).length).toBe(1);
    // The buffered fire is the first one after the first run's.
    expect(buffered).toBe(msOf(firstRun?.fireTime) + 1000);
    open();
    const second = await waitFor(
      async () => (await runsOfSchedule(c, scheduleId)).find((r) => msOf(r.fireTime) === buffered),
      { message: "the buffered fire to start once the first run ended", timeoutMs: 20_000 },
    );
    // It started after the first run finished, within the buffer's recheck (about a second).
    const first = (await c.workflows.getRun({ runId: firstRun?.id ?? "" })).run;
    expect(first?.status).toBe(RunStatus.SUCCEEDED);
    expect(msOf(second.createTime)).toBeGreaterThanOrEqual(msOf(first?.finishTime));
    expect(msOf(second.createTime) - msOf(first?.finishTime)).toBeLessThan(3000);
    await pause(scheduleId);
    await expectNoRunRunning(c, name, 30_000);
    expect(msOf((await schedule(scheduleId))?.bufferedFireTime)).toBe(0);
  }, 60_000);

  it("ALLOW_ALL: every fire starts a run while the previous ones still run", async () => {
    const { scheduleId, name, open } = await slowSchedule(OverlapPolicy.ALLOW_ALL);
    const runs = await waitFor(
      async () => {
        const r = await runsOfSchedule(c, scheduleId);
        return r.length >= 3 ? r : undefined;
      },
      { message: "three runs at once", timeoutMs: 20_000 },
    );
    expect(runs.every((r) => r.status === RunStatus.RUNNING)).toBe(true);
    expect((await schedule(scheduleId))?.skippedCount).toBe(0n);
    await pause(scheduleId);
    open();
    await expectNoRunRunning(c, name, 30_000);
  }, 60_000);

  it("CANCEL_PREVIOUS: each fire cancels the run still running and starts its own", async () => {
    const { scheduleId, name, open } = await slowSchedule(OverlapPolicy.CANCEL_PREVIOUS);
    await waitFor(async () => (await runsOfSchedule(c, scheduleId)).length >= 3, {
      message: "three fires",
      timeoutMs: 20_000,
    });
    await pause(scheduleId);
    const runs = (await runsOfSchedule(c, scheduleId)).sort((x, y) => msOf(x.fireTime) - msOf(y.fireTime));
    const latest = runs.at(-1);
    for (const r of runs.slice(0, -1)) {
      expect(r.status).toBe(RunStatus.CANCELLED);
      expect(r.error).toContain(`cancelled by schedule "${scheduleId}"`);
      expect(r.error).toContain("CANCEL_PREVIOUS");
    }
    expect(latest?.status).toBe(RunStatus.RUNNING);
    expect((await schedule(scheduleId))?.lastRunId).toBe(latest?.id);
    open();
    await expectNoRunRunning(c, name, 30_000);
    expect((await c.workflows.getRun({ runId: latest?.id ?? "" })).run?.status).toBe(RunStatus.SUCCEEDED);
  }, 60_000);
});
