import { createClient } from "@connectrpc/connect";
import { createWeftTransport } from "@weft/sdk";
import { OverlapPolicy, ScheduleService } from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import { workflowClient } from "../clients.js";
import { CpuMeter, redisPid } from "../cpu.js";
import { type Scenario, sleep } from "../scenario.js";

/** Create calls in flight while the schedules are made. */
const CREATE_CONCURRENCY = 64;

/**
 * Seconds after a minute's start counted as its burst: the fires, then the reconciler's check of the
 * runs they started (it checks each run once it has been quiet for --reconcile-after, 10 s). The rest
 * of the minute nothing is due.
 */
const BURST_S = 30;

/**
 * Scenario 10: the cost of schedules. N schedules fire every minute (cron `* * * * *`, UTC, no
 * jitter: all at the same second, the worst case), each starting a one-task run (no worker takes
 * them: what is measured is the firing, not the work). Over whole minutes, the CPU of weftd and of
 * Redis is sampled every second: on average, in each minute's burst, and in the idle rest of the
 * minute, when nothing is due and the firing loop sleeps on its timer.
 */
export const schedules: Scenario = {
  id: "schedules",
  title: "10. Schedules: 10,000 firing every minute",
  async run(ctx) {
    const count = ctx.quick ? 1000 : 10_000;
    const minutes = ctx.quick ? 1 : 2;
    const weftd = await ctx.startWeftd();
    const client = workflowClient(weftd.address);
    const s = createClient(ScheduleService, createWeftTransport({ address: weftd.address }).transport);
    await client.submitWorkflow({
      definition: { name: "sched-bench", tasks: [{ id: "a", handler: "noop", queue: "sched-bench" }] },
    });
    const pids = { weftd: weftd.pid, redis: await redisPid(ctx.redis) };
    const idleS = ctx.quick ? 10 : 30;
    /** CPU of weftd and Redis over `seconds` of doing nothing, in % of a core. */
    const idleCpu = async (seconds: number) => {
      const meter = new CpuMeter(pids).start();
      await sleep(seconds * 1000);
      const u = meter.stop();
      return {
        weftd: ((u.weftd ?? 0) / (seconds * 1000)) * 100,
        redis: ((u.redis ?? 0) / (seconds * 1000)) * 100,
      };
    };
    /** Calls `fn(i)` for i in [0, count), CREATE_CONCURRENCY at a time; returns the seconds it took. */
    const each = async (fn: (i: number) => Promise<unknown>) => {
      const began = Date.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: CREATE_CONCURRENCY }, async () => {
          for (let i = next++; i < count; i = next++) await fn(i);
        }),
      );
      return (Date.now() - began) / 1000;
    };
    await sleep(2000);
    const baseline = await idleCpu(idleS);
    // ALLOW_ALL: every minute starts a run per schedule (SKIP would skip them all from the second
    // minute on, since no worker finishes the runs).
    const spec = (cron: string) => ({
      workflow: "sched-bench",
      cron,
      overlapPolicy: OverlapPolicy.ALLOW_ALL,
    });
    const createS = await each((i) =>
      s.createSchedule({ scheduleId: `every-minute-${i}`, spec: spec("0 0 1 1 *") }),
    );
    ctx.log(`${count} schedules created in ${createS.toFixed(1)} s (yearly: none due)`);
    await sleep(2000);
    const notDue = await idleCpu(idleS);
    ctx.log(
      `idle weftd ${baseline.weftd.toFixed(2)} % without schedules, ${notDue.weftd.toFixed(2)} % with ${count} not due`,
    );
    const updateS = await each((i) =>
      s.updateSchedule({ scheduleId: `every-minute-${i}`, spec: spec("* * * * *") }),
    );
    ctx.log(`${count} schedules updated to fire every minute in ${updateS.toFixed(1)} s`);

    // Start on a minute's first second, and sample each second until the last minute ends.
    const firstMinute = Math.ceil((Date.now() + 2000) / 60_000) * 60_000;
    await sleep(firstMinute - Date.now());
    const before = await weftd.metrics();
    const total = new CpuMeter(pids).start();
    const perSecond: { second: number; weftd: number; redis: number }[] = [];
    const burstEnds: number[] = [];
    for (let m = 0; m < minutes; m++) {
      const minuteStart = firstMinute + m * 60_000;
      const runsBefore = await ctx.redis.zcard("bench:runs");
      let burstEnd: number | undefined;
      for (let second = 0; second < 60; second++) {
        const meter = new CpuMeter(pids).start();
        // Sample the runs index every 100 ms during the burst, to time it.
        const until = minuteStart + (second + 1) * 1000;
        while (Date.now() < until) {
          if (burstEnd === undefined && second < BURST_S) {
            const runs = await ctx.redis.zcard("bench:runs");
            if (runs - runsBefore >= count) burstEnd = Date.now();
          }
          await sleep(Math.min(100, Math.max(0, until - Date.now())));
        }
        const used = meter.stop();
        perSecond.push({ second, weftd: used.weftd ?? 0, redis: used.redis ?? 0 });
      }
      burstEnds.push(((burstEnd ?? Number.NaN) - minuteStart) / 1000);
    }
    const used = total.stop();
    // Read at once: the next minute's fires start now, and are not part of the measure.
    const after = await weftd.metrics();
    const spanS = minutes * 60;
    const runs = await ctx.redis.zcard("bench:runs");
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    const fires = delta("weft_schedule_fires_total");
    const lagSum = delta("weft_schedule_fire_lag_seconds_sum");
    const lagCount = delta("weft_schedule_fire_lag_seconds_count");
    const pct = (ms: number, s: number) => (ms / (s * 1000)) * 100;
    const sum = (rows: typeof perSecond, k: "weftd" | "redis") => rows.reduce((n, r) => n + r[k], 0);
    const burst = perSecond.filter((r) => r.second < BURST_S);
    const idle = perSecond.filter((r) => r.second >= BURST_S);
    ctx.log(
      `${fires} fires in ${minutes} min; weftd ${pct(used.weftd ?? 0, spanS).toFixed(1)} % of a core on average, ` +
        `${pct(sum(idle, "weftd"), idle.length).toFixed(2)} % between bursts; Redis ${pct(used.redis ?? 0, spanS).toFixed(1)} %`,
    );
    return {
      setup: [
        `idle first: weftd alone for ${idleS} s, then with ${count.toLocaleString("en-US")} yearly schedules (in the due set, none due) for ${idleS} s`,
        `then the ${count.toLocaleString("en-US")} schedules, updated to cron \`* * * * *\` (UTC, no jitter: every one fires at the same second), overlap ALLOW_ALL, one weftd`,
        "each fire starts a one-task run that no worker takes: the cost measured is the firing (claim, overlap check, run start, record), not the work",
        `CPU of weftd and Redis (/proc) sampled each second over ${minutes} whole minute(s); the burst is each minute's first ${BURST_S} s (the fires, then the reconciler's check of their runs), the idle part the other ${60 - BURST_S} s`,
      ],
      figures: [
        {
          key: "sched_create_s",
          label: `time to create ${count.toLocaleString("en-US")} schedules (${CREATE_CONCURRENCY} calls in flight)`,
          unit: "s",
          samples: [createS],
          digits: 1,
        },
        {
          key: "sched_idle_baseline_weftd_pct",
          label: `idle weftd CPU without schedules (${idleS} s)`,
          unit: "% of a core",
          samples: [baseline.weftd],
          digits: 3,
        },
        {
          key: "sched_idle_not_due_weftd_pct",
          label: `idle weftd CPU with ${count.toLocaleString("en-US")} schedules none of which is due (${idleS} s)`,
          unit: "% of a core",
          samples: [notDue.weftd],
          digits: 3,
        },
        {
          key: "sched_idle_baseline_redis_pct",
          label: "Redis CPU meanwhile, without schedules",
          unit: "% of a core",
          samples: [baseline.redis],
          digits: 3,
        },
        {
          key: "sched_idle_not_due_redis_pct",
          label: "Redis CPU meanwhile, with the schedules not due",
          unit: "% of a core",
          samples: [notDue.redis],
          digits: 3,
        },
        { key: "sched_fires", label: "runs started by fires", unit: "runs", samples: [fires], digits: 0 },
        {
          key: "sched_burst_s",
          label: "time from the minute's start until every schedule's run existed",
          unit: "s",
          samples: burstEnds,
          digits: 2,
        },
        {
          key: "sched_lag_mean_s",
          label: "mean fire lag (weft_schedule_fire_lag_seconds)",
          unit: "s",
          samples: [lagCount > 0 ? lagSum / lagCount : Number.NaN],
          digits: 2,
        },
        {
          key: "sched_weftd_cpu_pct",
          label: "weftd CPU, average over the minutes",
          unit: "% of a core",
          samples: [pct(used.weftd ?? 0, spanS)],
          digits: 2,
        },
        {
          key: "sched_redis_cpu_pct",
          label: "Redis CPU, average over the minutes",
          unit: "% of a core",
          samples: [pct(used.redis ?? 0, spanS)],
          digits: 2,
        },
        {
          key: "sched_weftd_cpu_burst_pct",
          label: `weftd CPU in the bursts (first ${BURST_S} s of each minute)`,
          unit: "% of a core",
          samples: [pct(sum(burst, "weftd"), burst.length)],
          digits: 1,
        },
        {
          key: "sched_weftd_cpu_idle_pct",
          label: "weftd CPU between bursts (nothing due)",
          unit: "% of a core",
          samples: [pct(sum(idle, "weftd"), idle.length)],
          digits: 3,
        },
        {
          key: "sched_redis_cpu_idle_pct",
          label: "Redis CPU between bursts",
          unit: "% of a core",
          samples: [pct(sum(idle, "redis"), idle.length)],
          digits: 3,
        },
        {
          key: "sched_weftd_cpu_per_fire_ms",
          label: "weftd CPU per fire (run started)",
          unit: "ms",
          samples: [fires > 0 ? (used.weftd ?? 0) / fires : Number.NaN],
          digits: 3,
        },
        {
          key: "sched_redis_cpu_per_fire_ms",
          label: "Redis CPU per fire",
          unit: "ms",
          samples: [fires > 0 ? (used.redis ?? 0) / fires : Number.NaN],
          digits: 3,
        },
      ],
      tables: [],
      notes: [
        `${runs.toLocaleString("en-US")} runs in Redis at the end (${count.toLocaleString("en-US")} per minute).`,
        "Between bursts weftd's firing loop sleeps on a timer set to the next due time; the due set is read again at least every 30 s.",
        "The runs' own cost is part of the burst: each run's start, and the reconciler's check of each run once it has been quiet for 10 s (it reads every quiet run once, 200 at a time).",
      ],
    };
  },
};
