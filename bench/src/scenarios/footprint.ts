import { spawn } from "node:child_process";
import type { Redis } from "ioredis";
import { WorkerChild } from "../children.js";
import { parallelWorkflow, workflowClient } from "../clients.js";
import { runIndependent } from "../load.js";
import { TSX_LOADER } from "../paths.js";
import { fmt } from "../report.js";
import { MiB, RssSampler, readRss } from "../rss.js";
import { type Figure, rssFigure, type Scenario, sleep } from "../scenario.js";

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info("memory");
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
}

/** Sums MEMORY USAGE of every key, by category of key. */
async function memoryByCategory(
  redis: Redis,
  categorize: (key: string) => string,
): Promise<Map<string, { keys: number; bytes: number }>> {
  const out = new Map<string, { keys: number; bytes: number }>();
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "COUNT", 1000);
    cursor = next;
    const pipeline = redis.pipeline();
    for (const key of keys) pipeline.memory("USAGE", key, "SAMPLES", "0");
    const sizes = (await pipeline.exec()) ?? [];
    keys.forEach((key, i) => {
      const bytes = Number(sizes[i]?.[1] ?? 0);
      const c = categorize(key);
      const entry = out.get(c) ?? { keys: 0, bytes: 0 };
      entry.keys++;
      entry.bytes += bytes;
      out.set(c, entry);
    });
  } while (cursor !== "0");
  return out;
}

function categoryOf(key: string): string {
  if (key.startsWith("bench:run:")) return "Weft run state (run, tasks, events of each run)";
  if (key.startsWith("bench:q:")) return "BullMQ (jobs kept after completion, queue keys)";
  if (key.startsWith("bench:")) return "Weft indexes (runs by time and by workflow, workflows, dirty set)";
  return "other";
}

/** RSS of an idle Node process started with `flags`, after it settled: what weftd's RSS starts from. */
async function idleNodeRss(flags: string[]): Promise<number> {
  const child = spawn(process.execPath, [...flags, "-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
  try {
    await sleep(1500);
    return readRss(child.pid as number) ?? 0;
  } finally {
    child.kill("SIGKILL");
  }
}

/** Scenario 6: weftd RSS idle and under load; Redis memory per 1,000 finished runs. */
export const footprint: Scenario = {
  id: "footprint",
  title: "6. Footprint",
  async run(ctx) {
    const { sizes } = ctx;
    const n = sizes.footprintRuns;
    const weftd = await ctx.startWeftd();
    const client = workflowClient(weftd.address);
    await client.submitWorkflow({ definition: parallelWorkflow("fp-one", "fp", 1) });
    await sleep(1500);
    const idleSampler = new RssSampler(weftd.pid, 50).start();
    await sleep(1000);
    const idle = idleSampler.stop().peak;

    const worker = await WorkerChild.weft({
      addresses: [weftd.address],
      queue: "fp",
      concurrency: sizes.workerConcurrency,
      sleepMs: 0,
      deferStart: false,
    });
    ctx.defer(() => worker.stop());
    const before = await usedMemory(ctx.redis);
    const rss = new RssSampler(weftd.pid).start();
    const load = await runIndependent([client], "fp-one", n, sizes.triggerConcurrency, worker);
    const { peak } = rss.stop();
    await sleep(1000);
    const after = await usedMemory(ctx.redis);
    const perThousand = ((after - before) / n) * 1000;
    const categories = await memoryByCategory(ctx.redis, categoryOf);
    const sampleRun = (await ctx.redis.keys("bench:run:*:log"))[0];
    const ttlMs = sampleRun === undefined ? -1 : await ctx.redis.pttl(sampleRun);
    ctx.log(
      `idle RSS ${(idle / MiB).toFixed(0)} MiB, peak under ${n} runs ${(peak / MiB).toFixed(0)} MiB (${load.tasksPerSecond.toFixed(0)} runs/s); Redis +${(perThousand / 1024).toFixed(0)} KiB per 1,000 runs`,
    );

    const bareNode = await idleNodeRss([]);
    const tsxNode = await idleNodeRss(["--import", TSX_LOADER]);
    const figures: Figure[] = [
      rssFigure("weftd RSS idle (after start and one SubmitWorkflow)", [idle / MiB], "weftd_rss_idle_mib"),
      rssFigure(`weftd peak RSS while ${n.toLocaleString("en-US")} runs execute (scenario 1's load)`, [
        peak / MiB,
      ]),
    ];
    const s1 = ctx.shared.get("throughput.rssPeakMiB");
    if (s1 !== undefined)
      figures.push(
        rssFigure("weftd peak RSS in scenario 1 (measured there)", [s1], "weftd_rss_scenario1_mib"),
      );
    figures.push(
      {
        key: "node_rss_mib",
        label: "for reference: an idle `node -e` process",
        unit: "MiB",
        samples: [bareNode / MiB],
        digits: 0,
      },
      {
        key: "node_tsx_rss_mib",
        label: "for reference: an idle `node --import tsx` process (how `pnpm weftd` runs weftd from source)",
        unit: "MiB",
        samples: [tsxNode / MiB],
        digits: 0,
      },
    );
    figures.push({
      key: "redis_kib_per_1000_runs",
      label: "Redis used_memory per 1,000 finished 1-task runs",
      unit: "KiB",
      samples: [perThousand / 1024],
      digits: 0,
    });
    const runState = categories.get(categoryOf("bench:run:x"));
    if (runState !== undefined) {
      figures.push({
        key: "redis_run_state_kib_per_1000_runs",
        label: "of which Weft run state (MEMORY USAGE of the run keys)",
        unit: "KiB",
        samples: [(runState.bytes / n / 1024) * 1000],
        digits: 0,
      });
    }
    return {
      setup: [
        "A fresh weftd; idle RSS is the peak of VmRSS sampled every 50 ms for 1 s after start-up and one SubmitWorkflow.",
        `Load: ${n.toLocaleString("en-US")} runs of a 1-task no-op workflow, as in scenario 1 (worker process with concurrency ${sizes.workerConcurrency}, ${sizes.triggerConcurrency} Trigger calls in flight); RSS sampled every 100 ms.`,
        "Redis: INFO memory used_memory before the runs and 1 s after the last completion, on the bench's otherwise empty Redis; finished runs are kept for the retention (weftd's default, 7 days), BullMQ keeps completed jobs (last 10,000, 1 h) as Weft configures it.",
      ],
      figures,
      tables: [
        {
          title: `Redis memory by key category after ${n.toLocaleString("en-US")} runs (MEMORY USAGE)`,
          header: ["category", "keys", "bytes", "per run"],
          rows: [...categories].map(([c, { keys, bytes }]) => [
            c,
            fmt(keys, 0),
            `${fmt(bytes / 1024, 0)} KiB`,
            `${fmt(bytes / n, 0)} B`,
          ]),
        },
      ],
      notes: [
        ttlMs > 0
          ? `A finished run's keys expire after the retention: a sampled run's event list had ${fmt(ttlMs / 86_400_000, 2)} days to live.`
          : "No finished run key with a TTL was found.",
      ],
    };
  },
};
