import { cpus } from "node:os";
import { WorkerChild } from "../children.js";
import { parallelWorkflow, type WorkflowClient, workflowClient } from "../clients.js";
import { redisPid } from "../cpu.js";
import { runIndependent } from "../load.js";
import { MiB, RssSampler } from "../rss.js";
import { type Figure, planWithin, repetitions, rssFigure, type Scenario } from "../scenario.js";
import { withCpu } from "./throughput.js";

/** Scenario 7: scenario 1's independent runs through one and through two weftd replicas. */
export const replicas: Scenario = {
  id: "replicas",
  title: "7. Replicas",
  async run(ctx) {
    const { sizes } = ctx;
    const a = await ctx.startWeftd();
    const b = await ctx.startWeftd();
    const clientA = workflowClient(a.address);
    const clientB = workflowClient(b.address);
    const rssA = new RssSampler(a.pid).start();
    const rssB = new RssSampler(b.pid).start();
    const c = sizes.workerConcurrency;
    // Separate queues, so that the two worker processes never take each other's tasks.
    const one = await WorkerChild.weft({
      addresses: [a.address],
      queue: "r1",
      concurrency: c,
      sleepMs: 0,
      deferStart: false,
    });
    ctx.defer(() => one.stop());
    const two = await WorkerChild.weft({
      addresses: [a.address, b.address],
      queue: "r2",
      concurrency: c,
      sleepMs: 0,
      deferStart: false,
    });
    ctx.defer(() => two.stop());
    await clientA.submitWorkflow({ definition: parallelWorkflow("rep-1", "r1", 1) });
    await clientA.submitWorkflow({ definition: parallelWorkflow("rep-2", "r2", 1) });
    const redis = await redisPid(ctx.redis);

    const single = (n: number) =>
      withCpu({ a: a.pid, b: b.pid, redis }, () =>
        runIndependent([clientA], "rep-1", n, sizes.triggerConcurrency, one),
      );
    const dual = (n: number) =>
      withCpu({ a: a.pid, b: b.pid, redis }, () =>
        runIndependent([clientA, clientB] as WorkflowClient[], "rep-2", n, sizes.triggerConcurrency, two),
      );
    const w = Math.min(sizes.warmupTasks, 500);
    ctx.log(`warm-up: ${w} runs through each configuration`);
    const warm1 = await single(w);
    const warm2 = await dual(w);
    const wanted = sizes.throughputTasks;
    const plan = planWithin(
      sizes.budgetS.replicas,
      { reps: sizes.reps, tasks: wanted },
      wanted / warm1.tasksPerSecond + wanted / warm2.tasksPerSecond,
      { mayShrinkTasks: true, minTasks: ctx.quick ? 200 : 2000 },
    );
    if (plan.note !== undefined) ctx.log(plan.note);
    const n = plan.tasks;

    const tps1: number[] = [];
    const tps2: number[] = [];
    const cpu1: number[] = [];
    const cpu2: number[] = [];
    for (let rep = 1; rep <= plan.reps; rep++) {
      const r1 = await single(n);
      const r2 = await dual(n);
      tps1.push(r1.tasksPerSecond);
      tps2.push(r2.tasksPerSecond);
      cpu1.push((r1.cpuPerTask.a ?? 0) + (r1.cpuPerTask.b ?? 0));
      cpu2.push((r2.cpuPerTask.a ?? 0) + (r2.cpuPerTask.b ?? 0));
      ctx.log(
        `rep ${rep}: 1 replica ${r1.tasksPerSecond.toFixed(0)}/s, 2 replicas ${r2.tasksPerSecond.toFixed(0)}/s`,
      );
    }
    const peakA = rssA.stop().peak / MiB;
    const peakB = rssB.stop().peak / MiB;
    const N = n.toLocaleString("en-US");
    const figures: Figure[] = [
      {
        key: "one_replica_tps",
        label: `1 replica, ${N} runs of a 1-task workflow`,
        unit: "tasks/s",
        samples: tps1,
      },
      {
        key: "two_replicas_tps",
        label: `2 replicas, ${N} runs of a 1-task workflow`,
        unit: "tasks/s",
        samples: tps2,
      },
      {
        key: "scaling_pct",
        label: "2 replicas / 1 replica",
        unit: "%",
        samples: tps2.map((x, i) => (x / (tps1[i] as number)) * 100),
        digits: 0,
      },
      { key: "weftd_cpu_one_ms", label: "weftd CPU per task, 1 replica", unit: "ms", samples: cpu1 },
      { key: "weftd_cpu_two_ms", label: "weftd CPU per task, 2 replicas (sum)", unit: "ms", samples: cpu2 },
      rssFigure("weftd peak RSS, either replica", [Math.max(peakA, peakB)]),
    ];
    return {
      setup: [
        `Two weftd processes on the same Redis and prefix. "1 replica": triggers and workers (one process, concurrency ${c}) on replica A only; "2 replicas": Trigger calls alternate between A and B (${sizes.triggerConcurrency} in flight in all), and the worker process runs two \`Worker\`s of concurrency ${c / 2}, one per replica.`,
        `${N} runs of a 1-task no-op workflow per measurement, ${repetitions(plan.reps)} after a warm-up of ${w.toLocaleString("en-US")} runs each, alternating the two configurations.`,
        `Everything runs on the same ${cpus().length} cores (both replicas, Redis, the worker process, the bench): a second replica can only add throughput while there is idle CPU for it.`,
      ],
      figures,
      tables: [],
      notes: plan.note === undefined ? [] : [plan.note],
    };
  },
};
