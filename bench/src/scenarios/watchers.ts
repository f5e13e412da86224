import { setMaxListeners } from "node:events";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { WorkerChild } from "../children.js";
import { chainWorkflow, type WorkflowClient, workflowClient } from "../clients.js";
import { CpuMeter } from "../cpu.js";
import { MiB, RssSampler } from "../rss.js";
import { planWithin, repetitions, rssFigure, type Scenario, sleep } from "../scenario.js";
import { latencyPercentiles } from "../stats.js";

/** Watch streams per HTTP/2 connection of the bench. */
const STREAMS_PER_CONNECTION = 100;

/** Scenario 4: many WatchRun streams on one run. */
export const watchers: Scenario = {
  id: "watchers",
  title: "4. Watchers",
  async run(ctx) {
    const { sizes } = ctx;
    const W = sizes.watchers;
    const L = sizes.watchChainLength;
    // Every watcher comes from the bench's one address: lift weftd's per-client stream limit.
    const weftd = await ctx.startWeftd(["--max-streams-per-client", String(W * 2)]);
    const rss = new RssSampler(weftd.pid, 50);
    const client = workflowClient(weftd.address);
    const connections: WorkflowClient[] = Array.from({ length: Math.ceil(W / STREAMS_PER_CONNECTION) }, () =>
      workflowClient(weftd.address),
    );
    await client.submitWorkflow({ definition: chainWorkflow("watched", "watch", L) });

    const p50: number[] = [];
    const p99: number[] = [];
    const maxes: number[] = [];
    const rate: number[] = [];
    const peaks: number[] = [];
    const cpuPerDelivery: number[] = [];
    const benchCpu: number[] = [];
    let reps = sizes.reps;
    let planNote: string | undefined;
    for (let rep = 0; rep <= reps; rep++) {
      // Rep 0 is a warm-up with a tenth of the watchers.
      const watcherCount = rep === 0 ? Math.ceil(W / 10) : W;
      const worker = await WorkerChild.weft({
        addresses: [weftd.address],
        queue: "watch",
        concurrency: 4,
        sleepMs: sizes.watchTaskMs,
        deferStart: true,
      });
      const repStarted = Date.now();
      const { run } = await client.trigger({ workflow: "watched" });
      const runId = run?.id ?? "";
      rss.start();
      const latencies: number[] = [];
      let caughtUp = 0;
      const abort = new AbortController();
      // One signal for every stream of the repetition.
      setMaxListeners(0, abort.signal);
      const streams = Array.from({ length: watcherCount }, async (_, i) => {
        const c = connections[i % connections.length] as WorkflowClient;
        let counted = false;
        for await (const { event } of c.watchRun({ runId }, { signal: abort.signal })) {
          if (event === undefined) continue;
          const received = Date.now();
          // Sequences 1 and 2 (run started, first task queued) came before the worker started: history.
          if (event.sequence <= 2n) {
            if (event.sequence === 2n && !counted) {
              counted = true;
              caughtUp++;
            }
            continue;
          }
          latencies.push(received - timestampMs(event.time as Timestamp));
        }
      });
      let failure: unknown;
      const all = Promise.all(
        streams.map((p) =>
          p.catch((err: unknown) => {
            failure ??= err;
          }),
        ),
      );
      const deadline = Date.now() + 60_000;
      while (caughtUp < watcherCount && failure === undefined && Date.now() < deadline) await sleep(20);
      if (failure !== undefined) throw failure;
      if (caughtUp < watcherCount) throw new Error(`only ${caughtUp} of ${watcherCount} watchers attached`);
      const cpu = new CpuMeter({ weftd: weftd.pid, bench: process.pid }).start();
      const t0 = Date.now();
      await worker.startPolling();
      await all;
      if (failure !== undefined) throw failure;
      const elapsed = Date.now() - t0;
      const used = cpu.stop();
      const weftdCpu = used.weftd ?? 0;
      const { peak } = rss.stop();
      await worker.stop();
      abort.abort();
      if (rep === 0) {
        // Project a repetition from the warm-up: attaching grows with the watchers, and the live phase
        // lasts the run's own length or the CPU weftd needs for all deliveries, whichever is longer.
        const scale = W / watcherCount;
        const attachS = (t0 - repStarted) / 1000;
        const liveS = Math.max(elapsed / 1000, (weftdCpu / 1000) * scale, ((used.bench ?? 0) / 1000) * scale);
        const plan = planWithin(
          sizes.budgetS.watchers,
          { reps: sizes.reps, tasks: W },
          attachS * scale + liveS + 2,
          { mayShrinkTasks: false },
        );
        reps = plan.reps;
        planNote = plan.note;
        if (planNote !== undefined) ctx.log(planNote);
        continue;
      }
      benchCpu.push(((used.bench ?? 0) / Math.max(1, latencies.length)) * 1000);
      const l = latencyPercentiles(latencies);
      p50.push(l.p50);
      p99.push(l.p99);
      maxes.push(l.max);
      rate.push((latencies.length / elapsed) * 1000);
      peaks.push(peak / MiB);
      cpuPerDelivery.push((weftdCpu / latencies.length) * 1000);
      ctx.log(
        `rep ${rep}: ${latencies.length} deliveries in ${elapsed} ms, p50 ${l.p50.toFixed(0)} ms, p99 ${l.p99.toFixed(0)} ms, max ${l.max.toFixed(0)} ms, ` +
          `weftd ${((weftdCpu / latencies.length) * 1000).toFixed(0)} µs CPU per delivery, peak RSS ${(peak / MiB).toFixed(0)} MiB`,
      );
    }
    return {
      setup: [
        `${W.toLocaleString("en-US")} WatchRun streams on one run, opened from the bench process over ${connections.length} HTTP/2 connections (${STREAMS_PER_CONNECTION} streams each), all attached before the run's first task starts; weftd started with \`--max-streams-per-client ${W * 2}\` since they all come from one address.`,
        `The run: a chain of ${L} tasks whose handler sleeps ${sizes.watchTaskMs} ms (worker in a separate process), about ${3 * L + 1} live events, each delivered to every watcher.`,
        "Delivery latency = the bench's Date.now() on receipt − the event's `time` (set by weftd when the step ran, millisecond resolution, same machine clock); the live events of every watcher are pooled per repetition.",
        `${repetitions(reps)} after a warm-up with a tenth of the watchers.`,
      ],
      figures: [
        {
          key: "delivery_p50_ms",
          label: `event delivery p50, ${W.toLocaleString("en-US")} watchers`,
          unit: "ms",
          samples: p50,
          digits: 1,
        },
        {
          key: "delivery_p99_ms",
          label: `event delivery p99, ${W.toLocaleString("en-US")} watchers`,
          unit: "ms",
          samples: p99,
          digits: 1,
          target: { op: "<=", value: 50, on: "median", text: "p99 ≤ 50 ms with 1,000 watchers" },
        },
        { key: "delivery_max_ms", label: "event delivery max", unit: "ms", samples: maxes, digits: 1 },
        {
          key: "deliveries_per_s",
          label: "events delivered per second (all watchers)",
          unit: "events/s",
          samples: rate,
        },
        {
          key: "weftd_cpu_us_per_delivery",
          label: "weftd CPU per delivered event",
          unit: "µs",
          samples: cpuPerDelivery,
          digits: 1,
        },
        {
          key: "bench_cpu_us_per_delivery",
          label: "receiving side (the bench process) CPU per delivered event",
          unit: "µs",
          samples: benchCpu,
          digits: 1,
        },
        rssFigure(`weftd peak RSS with ${W.toLocaleString("en-US")} watchers`, peaks),
      ],
      tables: [],
      notes: planNote === undefined ? [] : [planNote],
    };
  },
};
