import { cpus } from "node:os";
import { WorkerChild } from "../children.js";
import { parallelWorkflow, workflowClient } from "../clients.js";
import { startBenchCluster } from "../cluster.js";
import { redisPid } from "../cpu.js";
import { type LoadResult, runBatched, runIndependent, runOneWorkflow } from "../load.js";
import { MiB, RssSampler } from "../rss.js";
import { type Figure, planWithin, repetitions, rssFigure, type Scenario } from "../scenario.js";
import { BATCH, withCpu } from "./throughput.js";

/** Masters of the bench's Redis Cluster. */
const MASTERS = 3;

type Shape = "runs" | "batched" | "one";

const SHAPES: { shape: Shape; label: (n: string) => string }[] = [
  { shape: "runs", label: (n) => `${n} runs of a 1-task workflow (a Trigger each)` },
  { shape: "batched", label: (n) => `${n} runs of a 1-task workflow started with BatchTrigger` },
  { shape: "one", label: (n) => `1 run of ${n} parallel tasks` },
];

/**
 * Scenario 11: scenario 1's Weft shapes on a local Redis Cluster of three masters, beside the same
 * shapes on the bench's one redis-server, in turns, each through a weftd of its own.
 */
export const cluster: Scenario = {
  id: "cluster",
  title: "11. Redis Cluster",
  async run(ctx) {
    const { sizes } = ctx;
    const redisCluster = await startBenchCluster(MASTERS);
    ctx.defer(() => redisCluster.close());
    const one = await ctx.startWeftd();
    const many = await ctx.startWeftd([], redisCluster.url);
    const rss = new RssSampler(many.pid).start();
    const targets = [
      { name: "standalone", weftd: one, queue: "cs", redisPids: [await redisPid(ctx.redis)] },
      { name: "cluster", weftd: many, queue: "cc", redisPids: redisCluster.pids },
    ] as const;
    const setups = [];
    for (const t of targets) {
      const client = workflowClient(t.weftd.address);
      const worker = await WorkerChild.weft({
        addresses: [t.weftd.address],
        queue: t.queue,
        concurrency: sizes.workerConcurrency,
        sleepMs: 0,
        deferStart: false,
      });
      ctx.defer(() => worker.stop());
      await client.submitWorkflow({ definition: parallelWorkflow(`${t.queue}-one`, t.queue, 1) });
      const pids: Record<string, number> = { weftd: t.weftd.pid };
      t.redisPids.forEach((pid, i) => {
        pids[`redis${i}`] = pid;
      });
      const measure = (
        shape: Shape,
        n: number,
      ): Promise<LoadResult & { cpuPerTask: Record<string, number> }> =>
        withCpu(pids, () =>
          shape === "runs"
            ? runIndependent([client], `${t.queue}-one`, n, sizes.triggerConcurrency, worker)
            : shape === "batched"
              ? runBatched(client, `${t.queue}-one`, n, BATCH, worker)
              : runOneWorkflow(client, `${t.queue}-par-${n}`, n, worker),
        );
      setups.push({ ...t, client, measure });
    }

    const w = sizes.warmupTasks;
    ctx.log(`warm-up: ${w} tasks of each shape on each Redis`);
    let seconds = 0;
    for (const s of setups) {
      await s.client.submitWorkflow({ definition: parallelWorkflow(`${s.queue}-par-${w}`, s.queue, w) });
      for (const { shape } of SHAPES)
        seconds += sizes.throughputTasks / (await s.measure(shape, w)).tasksPerSecond;
    }
    const plan = planWithin(
      sizes.budgetS.cluster,
      { reps: sizes.reps, tasks: sizes.throughputTasks },
      seconds,
      { mayShrinkTasks: true, minTasks: ctx.quick ? 500 : 2000 },
    );
    if (plan.note !== undefined) ctx.log(plan.note);
    const n = plan.tasks;
    for (const s of setups)
      await s.client.submitWorkflow({ definition: parallelWorkflow(`${s.queue}-par-${n}`, s.queue, n) });

    const tps = new Map<string, number[]>();
    const weftdCpu = new Map<string, number[]>();
    const redisCpu = new Map<string, number[]>();
    const push = (map: Map<string, number[]>, key: string, v: number) =>
      map.set(key, [...(map.get(key) ?? []), v]);
    for (let rep = 1; rep <= plan.reps; rep++) {
      const line: string[] = [];
      for (const { shape } of SHAPES) {
        // In turns: the same shape on one server, then on the Cluster.
        for (const s of setups) {
          const r = await s.measure(shape, n);
          const key = `${s.name}.${shape}`;
          push(tps, key, r.tasksPerSecond);
          push(weftdCpu, key, r.cpuPerTask.weftd ?? 0);
          const redisMs = Object.entries(r.cpuPerTask)
            .filter(([name]) => name.startsWith("redis"))
            .reduce((sum, [, ms]) => sum + ms, 0);
          push(redisCpu, key, redisMs * 1000);
          line.push(`${shape} on ${s.name} ${r.tasksPerSecond.toFixed(0)}/s`);
        }
      }
      ctx.log(`rep ${rep}: ${line.join(", ")}`);
    }
    const peak = rss.stop().peak / MiB;

    const N = n.toLocaleString("en-US");
    const figures: Figure[] = [];
    for (const { shape, label } of SHAPES) {
      const single = tps.get(`standalone.${shape}`) ?? [];
      const multi = tps.get(`cluster.${shape}`) ?? [];
      figures.push(
        {
          key: `standalone_${shape}_tps`,
          label: `one redis-server, ${label(N)}`,
          unit: "tasks/s",
          samples: single,
        },
        {
          key: `cluster_${shape}_tps`,
          label: `Redis Cluster (${MASTERS} masters), ${label(N)}`,
          unit: "tasks/s",
          samples: multi,
        },
        {
          key: `cluster_${shape}_ratio_pct`,
          label: `Cluster / one server, ${label(N)}`,
          unit: "%",
          samples: multi.map((x, i) => (x / (single[i] as number)) * 100),
          digits: 0,
        },
        {
          key: `cluster_${shape}_weftd_cpu_ms`,
          label: `weftd CPU per task on the Cluster, ${shape === "one" ? "1 run" : shape === "batched" ? "BatchTrigger" : "a Trigger each"} (one server: ${median(weftdCpu.get(`standalone.${shape}`) ?? []).toFixed(2)} ms)`,
          unit: "ms",
          samples: weftdCpu.get(`cluster.${shape}`) ?? [],
        },
        {
          key: `cluster_${shape}_redis_cpu_us`,
          label: `Redis CPU per task, all masters, ${shape === "one" ? "1 run" : shape === "batched" ? "BatchTrigger" : "a Trigger each"} (one server: ${median(redisCpu.get(`standalone.${shape}`) ?? []).toFixed(0)} µs)`,
          unit: "µs",
          samples: redisCpu.get(`cluster.${shape}`) ?? [],
          digits: 0,
        },
      );
    }
    figures.push(rssFigure("weftd peak RSS on the Cluster", [peak]));
    return {
      setup: [
        `A local Redis Cluster of ${MASTERS} masters (redis-server in cluster mode, no replicas and no persistence, joined with redis-cli --cluster create), beside the bench's one redis-server; a weftd on each (\`--redis-url redis+cluster://…\` and \`redis://…\`), the same flags, a worker process of concurrency ${sizes.workerConcurrency} on each.`,
        `Scenario 1's three Weft shapes, ${N} tasks each, ${repetitions(plan.reps)} after a warm-up of ${w.toLocaleString("en-US")} tasks per shape; each shape on one server, then on the Cluster, in turns.`,
        `Everything shares the same ${cpus().length} cores: the three masters cannot add CPU here, so the figures measure what a Cluster costs per task (slot-grouped script calls, sharded marks and indexes, a round trip for the marks before their steps), not how it scales; on separate machines the run traffic spreads over the masters (see docs/operations.md).`,
      ],
      figures,
      tables: [],
      notes: plan.note === undefined ? [] : [plan.note],
    };
  },
};

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}
