import { randomUUID } from "node:crypto";
import { OverlapPolicy, ScheduleStatus } from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import { expectNoRunRunning } from "./support/liveness.js";
import { at, msOf, runsOfSchedule, scheduleClient } from "./support/schedules.js";
import { task, weftClients } from "./support/weft.js";
import { spawnWorker, type WorkerProcess } from "./support/worker-process.js";

let redis: RedisServer;
const weftds: WeftdProcess[] = [];
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
});

afterAll(async () => {
  for (const w of workers) await w.stop();
  for (const d of weftds) if (d.exit === undefined) await d.stop();
  await redis?.close();
});

async function replica(prefix: string): Promise<WeftdProcess> {
  const d = await spawnWeftd({ redisUrl: redis.url, prefix });
  weftds.push(d);
  return d;
}

/** The fire times of a schedule's runs, in order, with a check that none appears twice. */
function fireTimes(runs: { fireTime?: { seconds: bigint; nanos: number } }[]): number[] {
  const times = runs.map((r) => msOf(r.fireTime)).sort((a, b) => a - b);
  expect(new Set(times).size).toBe(times.length);
  return times;
}

describe("schedules across replicas", () => {
  it("fires every second on two replicas: 30 fires, 30 runs, none twice, through a kill -9 of one replica", async () => {
    const prefix = `test-${randomUUID()}`;
    const a = await replica(prefix);
    const b = await replica(prefix);
    const name = `every-second-${randomUUID().slice(0, 8)}`;
    await weftClients(a.address).workflows.submitWorkflow({
      definition: { name, tasks: [task("a", [], { queue: name })] },
    });
    const scheduleId = `s-${randomUUID().slice(0, 8)}`;
    // 30 fire times exactly: start and end bound the clock.
    const first = Math.ceil(Date.now() / 1000) * 1000 + 2000;
    const last = first + 29_000;
    await scheduleClient(b.address).createSchedule({
      scheduleId,
      spec: {
        workflow: name,
        cron: "* * * * * *",
        startTime: at(first),
        endTime: at(last),
        overlapPolicy: OverlapPolicy.ALLOW_ALL,
      },
    });
    // Kill, in the middle, the replica that fired last: the one most likely to hold the next claim.
    const started = (d: WeftdProcess) => d.logs.filter((l) => l.msg === "schedule: run started");
    const lastFired = () =>
      [a, b]
        .map((d) => ({ d, time: Number(started(d).at(-1)?.time ?? 0) }))
        .sort((x, y) => y.time - x.time)[0] as { d: WeftdProcess; time: number };
    await waitFor(() => started(a).length + started(b).length >= 12, {
      message: "12 fires before the kill",
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    const victim = lastFired().d;
    const survivor = victim === a ? b : a;
    const firedByVictim = started(victim).length;
    await victim.kill();
    expect(firedByVictim).toBeGreaterThan(0);
    const c = weftClients(survivor.address);
    const s = scheduleClient(survivor.address);
    await waitFor(
      async () => (await s.getSchedule({ scheduleId })).schedule?.status === ScheduleStatus.ENDED,
      { message: "the schedule to end after its 30th fire", timeoutMs: 60_000, intervalMs: 200 },
    );
    const runs = await runsOfSchedule(c, scheduleId);
    expect(runs).toHaveLength(30);
    expect(fireTimes(runs)).toEqual(Array.from({ length: 30 }, (_, i) => first + i * 1000));
    const keys = runs.map((r) => r.idempotencyKey);
    expect(new Set(keys).size).toBe(30);
    for (const r of runs)
      expect(r.idempotencyKey).toBe(`sched:${scheduleId}:${new Date(msOf(r.fireTime)).toISOString()}`);
    const { schedule } = await s.getSchedule({ scheduleId });
    expect([schedule?.firedCount, schedule?.skippedCount, schedule?.missedCount]).toEqual([30n, 0n, 0n]);
    expect(msOf(schedule?.lastFireTime)).toBe(last);
    // The survivor fired the rest (the victim's runs are those it logged before the kill).
    expect(started(survivor).length).toBeGreaterThanOrEqual(30 - firedByVictim);
    workers.push(await spawnWorker({ address: survivor.address, queue: name, concurrency: 8 }));
    await expectNoRunRunning(c, name, 30_000);
  }, 120_000);

  it("catches up after every replica was stopped: the latest fire times within the window, oldest first, the others counted missed", async () => {
    const prefix = `test-${randomUUID()}`;
    const one = await replica(prefix);
    const name = `catch-up-${randomUUID().slice(0, 8)}`;
    await weftClients(one.address).workflows.submitWorkflow({
      definition: { name, tasks: [task("a", [], { queue: name })] },
    });
    const s = scheduleClient(one.address);
    const whole = `whole-${randomUUID().slice(0, 8)}`;
    const bounded = `bounded-${randomUUID().slice(0, 8)}`;
    const spec = { workflow: name, cron: "* * * * * *", overlapPolicy: OverlapPolicy.ALLOW_ALL };
    await s.createSchedule({ scheduleId: whole, spec: { ...spec, maxCatchUpRuns: 100 } });
    await s.createSchedule({ scheduleId: bounded, spec: { ...spec, maxCatchUpRuns: 2 } });
    const c1 = weftClients(one.address);
    await waitFor(async () => (await runsOfSchedule(c1, bounded)).length >= 2, {
      message: "both schedules to fire",
      timeoutMs: 15_000,
    });
    await one.stop();
    const stoppedAt = Date.now();
    // Every replica is down for five fire times or more.
    await waitFor(() => Date.now() > stoppedAt + 5500, {
      message: "five fire times to pass with no replica",
    });
    const two = await replica(prefix);
    const restartedAt = Date.now();
    const c2 = weftClients(two.address);
    const s2 = scheduleClient(two.address);
    await waitFor(
      async () => (await runsOfSchedule(c2, bounded)).some((r) => msOf(r.fireTime) > restartedAt + 1000),
      {
        message: "the schedules to fire on time again after the restart",
        timeoutMs: 20_000,
      },
    );
    await s2.pauseSchedule({ scheduleId: whole });
    await s2.pauseSchedule({ scheduleId: bounded });

    // Within the catch-up window (1 h) and its bound (100), every fire time of the outage started.
    const wholeTimes = fireTimes(await runsOfSchedule(c2, whole));
    for (let i = 1; i < wholeTimes.length; i++)
      expect((wholeTimes[i] as number) - (wholeTimes[i - 1] as number)).toBe(1000);
    expect((await s2.getSchedule({ scheduleId: whole })).schedule?.missedCount).toBe(0n);
    // The catch-up runs started oldest first.
    const caught = (await runsOfSchedule(c2, whole))
      .filter((r) => msOf(r.fireTime) > stoppedAt && msOf(r.fireTime) < restartedAt)
      .sort((x, y) => msOf(x.createTime) - msOf(y.createTime) || msOf(x.fireTime) - msOf(y.fireTime));
    expect(caught.length).toBeGreaterThanOrEqual(4);
    expect(caught.map((r) => msOf(r.fireTime))).toEqual(
      caught.map((r) => msOf(r.fireTime)).sort((x, y) => x - y),
    );

    // Bounded to 2: each fire time of the outage either started or is counted missed, never both.
    const boundedTimes = fireTimes(await runsOfSchedule(c2, bounded));
    const { schedule } = await s2.getSchedule({ scheduleId: bounded });
    const missed = Number(schedule?.missedCount);
    expect(missed).toBeGreaterThanOrEqual(2);
    const span = ((boundedTimes.at(-1) as number) - (boundedTimes[0] as number)) / 1000 + 1;
    expect(boundedTimes.length + missed).toBe(span);
    // The gap is right before the two fire times started late.
    const gaps = boundedTimes
      .slice(1)
      .map((t, i) => t - (boundedTimes[i] as number))
      .filter((d) => d > 1000);
    expect(gaps).toEqual([(missed + 1) * 1000]);

    workers.push(await spawnWorker({ address: two.address, queue: name, concurrency: 16 }));
    await expectNoRunRunning(c2, name, 60_000);
  }, 120_000);
});
