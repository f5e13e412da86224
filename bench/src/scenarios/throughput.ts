import { availableParallelism } from "node:os";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { measureFloor } from "../calibration.js";
import { WorkerChild } from "../children.js";
import { parallelWorkflow, workflowClient } from "../clients.js";
import { CpuMeter, type ProcessUsage, redisPid } from "../cpu.js";
import {
  type LoadResult,
  runBatched,
  runBullmq,
  runBullmqAdds,
  runIndependent,
  runOneWorkflow,
} from "../load.js";
import { type CommandStat, commandStats, resetCommandStats } from "../redis-stats.js";
import { fmt } from "../report.js";
import { MiB, RssSampler } from "../rss.js";
import { type Figure, planWithin, repetitions, rssFigure, type Scenario } from "../scenario.js";

const RAW_PREFIX = "bench-raw";
/** Runs per BatchTrigger call, as the raw ceiling adds its jobs 1,000 per addBulk. */
export const BATCH = 1000;

/** Target of scenarios 1 and 7: Weft's throughput as a share of raw BullMQ's, same run, same Redis. */
export const RATIO_TARGET = { op: ">=", value: 50, on: "median", text: "≥ 50 % of raw BullMQ" } as const;

/** A measurement with the CPU time (ms per task) and system calls (per task) of each process. */
export async function withCpu(
  pids: Record<string, number>,
  fn: () => Promise<LoadResult>,
): Promise<LoadResult & { cpuPerTask: Record<string, number>; syscallsPerTask: Record<string, number> }> {
  const meter = new CpuMeter(pids).start();
  const result = await fn();
  const used = meter.usage();
  const per = (f: (u: ProcessUsage) => number) =>
    Object.fromEntries(Object.entries(used).map(([k, u]) => [k, f(u) / result.tasks]));
  return {
    ...result,
    cpuPerTask: per((u) => u.cpuMs),
    syscallsPerTask: per((u) => u.readCalls + u.writeCalls),
  };
}

/**
 * How much of the machine the bench's processes used while a measurement ran, in % of all its cores:
 * their CPU per task times tasks per second. Under 100 %, the shape waited on something other
 * than CPU (round trips, one process's turn on the work of another).
 */
function machineUse(d: { tasksPerSecond: number; cpuPerTask: Record<string, number> }): number {
  const msPerTask = Object.values(d.cpuPerTask).reduce((sum, ms) => sum + ms, 0);
  return ((msPerTask * d.tasksPerSecond) / 1000 / availableParallelism()) * 100;
}

/** A measurement with Redis's command statistics per task. */
async function withCommandStats<T extends LoadResult>(
  redis: Redis,
  fn: () => Promise<T>,
): Promise<T & { commands: Map<string, CommandStat> }> {
  await resetCommandStats(redis);
  const result = await fn();
  const stats = await commandStats(redis);
  // The INFO call itself is not the workload's.
  stats.delete("info");
  stats.delete("config|resetstat");
  return { ...result, commands: stats };
}

/** Rows of Redis commands per task for several measurements, most frequent first. */
function commandTable(columns: { tasks: number; commands: Map<string, CommandStat> }[]): string[][] {
  const names = new Set<string>();
  for (const c of columns) for (const name of c.commands.keys()) names.add(name);
  const perTask = (c: (typeof columns)[number], name: string) => (c.commands.get(name)?.calls ?? 0) / c.tasks;
  const rows = [...names]
    .map((name) => ({ name, first: perTask(columns[0] as (typeof columns)[number], name) }))
    .sort((a, b) => b.first - a.first || a.name.localeCompare(b.name))
    .filter(({ name }) => columns.some((c) => perTask(c, name) >= 0.005))
    .map(({ name }) =>
      [name, ...columns.map((c) => fmt(perTask(c, name), 2))].concat(
        columns.map((c) => {
          const s = c.commands.get(name);
          return s === undefined || s.calls === 0 ? "" : fmt(s.usec / s.calls, 1);
        }),
      ),
    );
  const total = (c: (typeof columns)[number]) =>
    [...c.commands.values()].reduce((a, s) => a + s.calls, 0) / c.tasks;
  rows.push(["**all**", ...columns.map((c) => `**${fmt(total(c), 1)}**`), ...columns.map(() => "")]);
  return rows;
}

/** One run of `n` tasks through the engine child (Weft's engine with in-process slots, no gRPC). */
async function runAlone(alone: WorkerChild, n: number): Promise<LoadResult> {
  const ms = await alone.runEngine(n, 600_000);
  return { tasks: n, elapsedMs: ms, tasksPerSecond: n / (ms / 1000), submitMs: 0 };
}

/** Scenario 1: tasks per second, Weft (two shapes) against raw BullMQ. */
export const throughput: Scenario = {
  id: "throughput",
  title: "1. Throughput",
  async run(ctx) {
    const { sizes } = ctx;
    const weftd = await ctx.startWeftd();
    const client = workflowClient(weftd.address);
    const rss = new RssSampler(weftd.pid).start();

    const worker = await WorkerChild.weft({
      addresses: [weftd.address],
      queue: "tp",
      concurrency: sizes.workerConcurrency,
      sleepMs: 0,
      deferStart: false,
    });
    ctx.defer(() => worker.stop());
    const raw = await WorkerChild.bullmq({
      redisUrl: ctx.redisUrl,
      queue: "raw",
      prefix: RAW_PREFIX,
      concurrency: sizes.workerConcurrency,
    });
    ctx.defer(() => raw.stop());
    const alone = await WorkerChild.engineAlone({
      redisUrl: ctx.redisUrl,
      prefix: "bench-alone",
      concurrency: sizes.workerConcurrency,
      maxTasks: 100_000,
    });
    ctx.defer(() => alone.stop());
    const queue = new Queue("raw", { connection: { url: ctx.redisUrl }, prefix: RAW_PREFIX });
    ctx.defer(() => queue.close());
    const pids = {
      weftd: weftd.pid,
      worker: worker.pid,
      raw: raw.pid,
      engine: alone.pid,
      redis: await redisPid(ctx.redis),
      bench: process.pid,
    };

    const w = sizes.warmupTasks;
    await client.submitWorkflow({ definition: parallelWorkflow("tp-one", "tp", 1) });
    await client.submitWorkflow({ definition: parallelWorkflow("tp-warm", "tp", w) });
    ctx.log(`warm-up: ${w} runs, a ${w}-task run, ${w} raw jobs`);
    const warm = [
      await runIndependent([client], "tp-one", w, sizes.triggerConcurrency, worker),
      await runBatched(client, "tp-one", w, BATCH, worker),
      await runOneWorkflow(client, "tp-warm", w, worker),
      await runBullmq(queue, w, raw, "warm"),
      await runAlone(alone, w),
    ];
    let n = sizes.throughputTasks;
    const plan = planWithin(
      sizes.budgetS.throughput,
      { reps: sizes.reps, tasks: n },
      warm.reduce((s, r) => s + n / r.tasksPerSecond, 0),
      // The full run measures the sizes, only fewer times; --quick may measure fewer tasks.
      { mayShrinkTasks: ctx.quick, minTasks: 500 },
    );
    if (plan.note !== undefined) ctx.log(plan.note);
    n = plan.tasks;
    const floor = await measureFloor(ctx.redisUrl, sizes.workerConcurrency);
    ctx.log(
      `floor: bare Connect unary ${floor.connect.perSecond.toFixed(0)} calls/s with ${sizes.workerConcurrency} in flight, ${floor.connect.serverCpuMs.toFixed(2)} ms server CPU per call; ` +
        `bare node:http2 gRPC ${floor.h2.perSecond.toFixed(0)} calls/s, ${floor.h2.serverCpuMs.toFixed(3)} ms`,
    );
    await client.submitWorkflow({ definition: parallelWorkflow("tp-par", "tp", n) });

    const runs: number[] = [];
    const batched: number[] = [];
    const oneWf: number[] = [];
    const engineAlone: number[] = [];
    const engineCpu: number[] = [];
    const bull: number[] = [];
    const bullAdds: number[] = [];
    const triggerRates: number[] = [];
    const cpu = {
      runsWeftd: [] as number[],
      batchedWeftd: [] as number[],
      oneWeftd: [] as number[],
      worker: [] as number[],
      bench: [] as number[],
    };
    const sys = {
      weftd: [] as number[],
      worker: [] as number[],
      redis: [] as number[],
      raw: [] as number[],
      rawRedis: [] as number[],
    };
    const use = { runs: [] as number[], batched: [] as number[], one: [] as number[], bull: [] as number[] };
    const redisUs = {
      weft: [] as number[],
      batched: [] as number[],
      one: [] as number[],
      bull: [] as number[],
    };
    const dispatch = {
      byCompletions: [] as number[],
      returned: [] as number[],
      /** Per shape (a Trigger per run, BatchTrigger): fetched ahead by completions, and put back, per 1,000 tasks. */
      runs: { ahead: [] as number[], returned: [] as number[] },
      batched: { ahead: [] as number[], returned: [] as number[] },
    };
    /** Jobs fetched ahead by completions, and of those put back unused, per 1,000 tasks, over `fn`. */
    const heldOver = async <T>(
      into: { ahead: number[]; returned: number[] },
      fn: () => Promise<T>,
    ): Promise<T> => {
      const before = await weftd.metrics();
      const result = await fn();
      const after = await weftd.metrics();
      const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
      into.ahead.push((delta('weft_jobs_fetched_total{via="completion"}') / n) * 1000);
      into.returned.push((delta("weft_held_jobs_returned_total") / n) * 1000);
      return result;
    };
    let commandRows: string[][] = [];
    for (let rep = 1; rep <= plan.reps; rep++) {
      const a = await heldOver(dispatch.runs, () =>
        withCommandStats(ctx.redis, () =>
          withCpu(pids, () => runIndependent([client], "tp-one", n, sizes.triggerConcurrency, worker)),
        ),
      );
      const d = await heldOver(dispatch.batched, () =>
        withCommandStats(ctx.redis, () =>
          withCpu(pids, () => runBatched(client, "tp-one", n, BATCH, worker)),
        ),
      );
      const before = await weftd.metrics();
      const b = await withCommandStats(ctx.redis, () =>
        withCpu(pids, () => runOneWorkflow(client, "tp-par", n, worker)),
      );
      const after = await weftd.metrics();
      const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
      const byCompletions = delta('weft_jobs_fetched_total{via="completion"}');
      const byPolls = delta('weft_jobs_fetched_total{via="poll"}');
      dispatch.byCompletions.push((byCompletions / Math.max(1, byCompletions + byPolls)) * 100);
      dispatch.returned.push((delta("weft_held_jobs_returned_total") / n) * 1000);
      const e = await withCpu(pids, () => runAlone(alone, n));
      engineAlone.push(e.tasksPerSecond);
      engineCpu.push(e.cpuPerTask.engine ?? 0);
      const c = await withCommandStats(ctx.redis, () =>
        withCpu(pids, () => runBullmq(queue, n, raw, `rep${rep}`)),
      );
      if (rep === 1) commandRows = commandTable([a, d, b, c]);
      const adds = await runBullmqAdds(queue, n, sizes.triggerConcurrency, raw, `adds${rep}`);
      bullAdds.push(adds.tasksPerSecond);
      runs.push(a.tasksPerSecond);
      batched.push(d.tasksPerSecond);
      cpu.batchedWeftd.push(d.cpuPerTask.weftd ?? 0);
      redisUs.batched.push((d.cpuPerTask.redis ?? 0) * 1000);
      oneWf.push(b.tasksPerSecond);
      redisUs.one.push((b.cpuPerTask.redis ?? 0) * 1000);
      bull.push(c.tasksPerSecond);
      triggerRates.push((n / a.submitMs) * 1000);
      cpu.runsWeftd.push(a.cpuPerTask.weftd ?? 0);
      cpu.oneWeftd.push(b.cpuPerTask.weftd ?? 0);
      cpu.worker.push(((a.cpuPerTask.worker ?? 0) + (b.cpuPerTask.worker ?? 0)) / 2);
      cpu.bench.push(a.cpuPerTask.bench ?? 0);
      sys.weftd.push(a.syscallsPerTask.weftd ?? 0);
      sys.worker.push(a.syscallsPerTask.worker ?? 0);
      sys.redis.push(a.syscallsPerTask.redis ?? 0);
      sys.raw.push(c.syscallsPerTask.raw ?? 0);
      sys.rawRedis.push(c.syscallsPerTask.redis ?? 0);
      redisUs.weft.push((a.cpuPerTask.redis ?? 0) * 1000);
      redisUs.bull.push((c.cpuPerTask.redis ?? 0) * 1000);
      use.runs.push(machineUse(a));
      use.batched.push(machineUse(d));
      use.one.push(machineUse(b));
      use.bull.push(machineUse(c));
      ctx.log(
        `rep ${rep}: ${n} runs ${a.tasksPerSecond.toFixed(0)}/s (weftd ${(a.cpuPerTask.weftd ?? 0).toFixed(2)} ms CPU/task), ` +
          `batched ${d.tasksPerSecond.toFixed(0)}/s (weftd ${(d.cpuPerTask.weftd ?? 0).toFixed(2)} ms CPU/task, redis ${((d.cpuPerTask.redis ?? 0) * 1000).toFixed(0)} µs/task, all started in ${d.submitMs} ms), ` +
          `1 run × ${n} tasks ${b.tasksPerSecond.toFixed(0)}/s (weftd ${(b.cpuPerTask.weftd ?? 0).toFixed(2)} ms CPU/task), ` +
          `engine alone ${e.tasksPerSecond.toFixed(0)}/s (${(e.cpuPerTask.engine ?? 0).toFixed(2)} ms CPU/task), ` +
          `raw BullMQ ${c.tasksPerSecond.toFixed(0)}/s, one add per job ${adds.tasksPerSecond.toFixed(0)}/s`,
      );
    }
    const { peak } = rss.stop();
    ctx.shared.set("throughput.rssPeakMiB", peak / MiB);

    const ratio = (xs: number[]) => xs.map((x, i) => (x / (bull[i] as number)) * 100);
    const N = n.toLocaleString("en-US");
    const figures: Figure[] = [
      { key: "weft_runs_tps", label: `Weft, ${N} runs of a 1-task workflow`, unit: "tasks/s", samples: runs },
      {
        key: "weft_batched_runs_tps",
        label: `Weft, ${N} runs of a 1-task workflow started with BatchTrigger`,
        unit: "tasks/s",
        samples: batched,
      },
      {
        key: "weft_one_run_tps",
        label: `Weft, 1 run of ${N} parallel tasks`,
        unit: "tasks/s",
        samples: oneWf,
      },
      { key: "bullmq_tps", label: "raw BullMQ (addBulk + Worker, no-op)", unit: "tasks/s", samples: bull },
      {
        key: "ratio_runs_pct",
        label: `Weft / BullMQ, ${N} runs`,
        unit: "%",
        samples: ratio(runs),
        target: RATIO_TARGET,
        digits: 1,
      },
      {
        key: "ratio_batched_runs_pct",
        label: `Weft / BullMQ, ${N} runs started with BatchTrigger`,
        unit: "%",
        samples: ratio(batched),
        target: RATIO_TARGET,
        digits: 1,
      },
      {
        key: "ratio_one_run_pct",
        label: `Weft / BullMQ, 1 run of ${N} tasks`,
        unit: "%",
        samples: ratio(oneWf),
        target: RATIO_TARGET,
        digits: 1,
      },
      {
        key: "engine_alone_tps",
        label: `diagnostic: Weft's engine alone, no gRPC (in-process slots), 1 run of ${N} tasks`,
        unit: "tasks/s",
        samples: engineAlone,
      },
      {
        key: "ratio_engine_alone_pct",
        label: "diagnostic: Weft's engine alone / BullMQ",
        unit: "%",
        samples: ratio(engineAlone),
        digits: 1,
      },
      {
        key: "engine_alone_cpu_ms",
        label: "diagnostic: CPU per task of the engine alone's process (weftd's work, no gRPC)",
        unit: "ms",
        samples: engineCpu,
      },
      {
        key: "bullmq_adds_tps",
        label: `diagnostic: raw BullMQ, one Queue.add per job (${sizes.triggerConcurrency} in flight) + Worker`,
        unit: "tasks/s",
        samples: bullAdds,
      },
      {
        key: "ratio_runs_adds_pct",
        label: `diagnostic: Weft, ${N} runs (a Trigger each) / raw BullMQ, one add per job`,
        unit: "%",
        samples: runs.map((x, i) => (x / (bullAdds[i] as number)) * 100),
        digits: 1,
      },
      {
        key: "trigger_rate",
        label: `Trigger calls/s while starting ${N} runs (${sizes.triggerConcurrency} in flight)`,
        unit: "calls/s",
        samples: triggerRates,
      },
      {
        key: "weftd_cpu_runs_ms",
        label: `weftd CPU per task, ${N} runs`,
        unit: "ms",
        samples: cpu.runsWeftd,
      },
      {
        key: "weftd_cpu_batched_runs_ms",
        label: `weftd CPU per task, ${N} runs started with BatchTrigger`,
        unit: "ms",
        samples: cpu.batchedWeftd,
      },
      {
        key: "weftd_cpu_one_run_ms",
        label: `weftd CPU per task, 1 run of ${N} tasks`,
        unit: "ms",
        samples: cpu.oneWeftd,
      },
      {
        key: "worker_cpu_ms",
        label: "worker process CPU per task (@weft/worker)",
        unit: "ms",
        samples: cpu.worker,
      },
      {
        key: "bench_cpu_runs_ms",
        label: `bench process (the Trigger client) CPU per task, ${N} runs`,
        unit: "ms",
        samples: cpu.bench,
      },
      {
        key: "redis_cpu_weft_us",
        label: `Redis CPU per task, Weft (${N} runs)`,
        unit: "µs",
        samples: redisUs.weft,
        digits: 0,
      },
      {
        key: "redis_cpu_batched_us",
        label: `Redis CPU per task, Weft (${N} runs started with BatchTrigger)`,
        unit: "µs",
        samples: redisUs.batched,
        digits: 0,
      },
      {
        key: "fetched_by_completions_pct",
        label: `jobs fetched by completions (not by polls), 1 run of ${N} tasks`,
        unit: "%",
        samples: dispatch.byCompletions,
        digits: 0,
      },
      {
        key: "held_returned_per_1000",
        label: `jobs fetched by completions and put back unused, per 1,000 tasks, 1 run of ${N} tasks`,
        unit: "jobs",
        samples: dispatch.returned,
        digits: 1,
      },
      {
        key: "held_ahead_runs_per_1000",
        label: `jobs fetched ahead by completions, per 1,000 tasks, ${N} runs (a Trigger each)`,
        unit: "jobs",
        samples: dispatch.runs.ahead,
        digits: 1,
      },
      {
        key: "held_returned_runs_per_1000",
        label: `of those, put back unused, per 1,000 tasks, ${N} runs (a Trigger each)`,
        unit: "jobs",
        samples: dispatch.runs.returned,
        digits: 1,
      },
      {
        key: "held_ahead_batched_per_1000",
        label: `jobs fetched ahead by completions, per 1,000 tasks, ${N} runs (BatchTrigger)`,
        unit: "jobs",
        samples: dispatch.batched.ahead,
        digits: 1,
      },
      {
        key: "held_returned_batched_per_1000",
        label: `of those, put back unused, per 1,000 tasks, ${N} runs (BatchTrigger)`,
        unit: "jobs",
        samples: dispatch.batched.returned,
        digits: 1,
      },
      {
        key: "redis_cpu_weft_one_run_us",
        label: `Redis CPU per task, Weft (1 run of ${N} tasks)`,
        unit: "µs",
        samples: redisUs.one,
        digits: 0,
      },
      {
        key: "redis_cpu_bullmq_us",
        label: "Redis CPU per task, raw BullMQ",
        unit: "µs",
        samples: redisUs.bull,
        digits: 0,
      },
      {
        key: "machine_use_runs_pct",
        label: `CPU all processes used while ${N} runs ran (a Trigger each), of the machine's cores`,
        unit: "%",
        samples: use.runs,
        digits: 0,
      },
      {
        key: "machine_use_batched_pct",
        label: `CPU all processes used while ${N} runs started with BatchTrigger ran, of the machine's cores`,
        unit: "%",
        samples: use.batched,
        digits: 0,
      },
      {
        key: "machine_use_one_run_pct",
        label: `CPU all processes used while 1 run of ${N} tasks ran, of the machine's cores`,
        unit: "%",
        samples: use.one,
        digits: 0,
      },
      {
        key: "machine_use_bullmq_pct",
        label: "CPU all processes used while raw BullMQ ran, of the machine's cores",
        unit: "%",
        samples: use.bull,
        digits: 0,
      },
      {
        key: "weftd_syscalls_per_task",
        label: `weftd read + write system calls per task, ${N} runs`,
        unit: "calls",
        samples: sys.weftd,
        digits: 1,
      },
      {
        key: "worker_syscalls_per_task",
        label: "worker process read + write system calls per task",
        unit: "calls",
        samples: sys.worker,
        digits: 1,
      },
      {
        key: "redis_syscalls_per_task",
        label: `Redis read + write system calls per task, Weft ${N} runs`,
        unit: "calls",
        samples: sys.redis,
        digits: 1,
      },
      {
        key: "redis_syscalls_bullmq_per_task",
        label: "Redis read + write system calls per task, raw BullMQ",
        unit: "calls",
        samples: sys.rawRedis,
        digits: 1,
      },
      {
        key: "bullmq_worker_syscalls_per_task",
        label: "raw BullMQ worker process read + write system calls per task",
        unit: "calls",
        samples: sys.raw,
        digits: 1,
      },
      {
        key: "floor_rpc_per_s",
        label: `floor: bare Connect unary calls/s, ${sizes.workerConcurrency} in flight (no Weft, no Redis)`,
        unit: "calls/s",
        samples: [floor.connect.perSecond],
      },
      {
        key: "floor_rpc_server_cpu_ms",
        label: "floor: server CPU per bare Connect unary call at that concurrency",
        unit: "ms",
        samples: [floor.connect.serverCpuMs],
      },
      {
        key: "floor_h2_rpc_per_s",
        label: `floor: bare node:http2 gRPC unary calls/s, ${sizes.workerConcurrency} in flight (no Connect on the server)`,
        unit: "calls/s",
        samples: [floor.h2.perSecond],
      },
      {
        key: "floor_h2_rpc_server_cpu_ms",
        label: "floor: server CPU per bare node:http2 gRPC unary call at that concurrency",
        unit: "ms",
        samples: [floor.h2.serverCpuMs],
        digits: 3,
      },
      rssFigure("weftd peak RSS during the scenario", [peak / MiB]),
    ];
    return {
      setup: [
        `${N} no-op tasks per measurement, ${repetitions(plan.reps)} after a warm-up of ${w.toLocaleString("en-US")}; each repetition measures them in turn on the same Redis.`,
        `Weft: one weftd process; workers are @weft/worker \`Worker\`s with concurrency ${sizes.workerConcurrency} in a separate Node process (gRPC over loopback HTTP/2).`,
        `"${N} runs": ${N} Trigger calls of a 1-task workflow, ${sizes.triggerConcurrency} in flight on one HTTP/2 connection; "started with BatchTrigger": the same ${N} runs started by BatchTrigger calls of ${BATCH.toLocaleString("en-US")} runs, one after the other, as the raw ceiling adds its jobs; "1 run": one Trigger of a ${N}-task workflow.`,
        "Time runs from the first Trigger (or addBulk) to the last completion acknowledged (the completion's result from weftd on the worker's Work stream; BullMQ's `completed` event).",
        `Raw BullMQ ceiling: \`Queue.addBulk\` in chunks of 1,000 from the bench process, a BullMQ \`Worker\` with a no-op processor and concurrency ${sizes.workerConcurrency} in a separate Node process, same retention options as Weft's jobs.`,
        `Diagnostic, "one Queue.add per job": the same raw worker, its jobs added by \`Queue.add\` calls from the bench process, ${sizes.triggerConcurrency} in flight — the raw counterpart of a Trigger call per run (each job is its own call). The targets are judged against the addBulk ceiling, as the issue defines it.`,
        `Floor: a bare Connect server (no Weft, no Redis) in its own process answering an empty GetWorkflow, called from the bench with ${sizes.workerConcurrency} calls in flight: what one unary call costs on this machine. Next to it, a bare gRPC server on node:http2 alone (\`bench/src/child/bare-h2-server.ts\`: the same call, decoded with protobuf-es, none of a real server's deadlines, compression or errors), called by the same Connect client: what the HTTP/2 layer costs, so the difference is the server framework's per-call cost. Without batching a Weft task takes 2 calls (PollTask, CompleteTask), 3 with its own Trigger; @weft/worker takes no call per task: it grants credits for its free slots and sends its outputs on one Work stream, in one message per turn of its event loop.`,
        `Diagnostic, "engine alone": Weft's engine (the code weftd runs for PollTask and CompleteTasks) in its own Node process (run with tsx), with ${sizes.workerConcurrency} in-process slots that take tasks as weftd does for a worker's Work stream — one poll at a time for the free slots, each completion reported as its no-op handler returns — and no gRPC: what the bookkeeping on BullMQ and Redis allows without the hop. No deployment runs like this.`,
        "CPU per task: user + system time from /proc/<pid>/stat of each process over the measurement, divided by the tasks; all processes share the machine's cores. System calls per task: syscr + syscw of /proc/<pid>/io (socket reads and writes, mostly).",
      ],
      figures,
      tables: [
        {
          title:
            "Redis commands executed per task (INFO commandstats, first repetition). The commands Lua scripts run count too, and each script run also counts once as EVALSHA (or EVAL), whose µs/call includes them.",
          header: [
            "command",
            `calls/task, Weft ${N} runs`,
            "calls/task, Weft BatchTrigger",
            `calls/task, Weft 1 run`,
            "calls/task, raw BullMQ",
            "µs/call, Weft runs",
            "µs/call, Weft BatchTrigger",
            "µs/call, Weft 1 run",
            "µs/call, BullMQ",
          ],
          rows: commandRows,
        },
      ],
      notes: plan.note === undefined ? [] : [plan.note],
    };
  },
};
