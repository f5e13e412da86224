import { setMaxListeners } from "node:events";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import type { RunEvent } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { WorkerChild } from "../children.js";
import { chainWorkflow, type WorkflowClient, workflowClient } from "../clients.js";
import { CpuMeter } from "../cpu.js";
import { GrpcWatchConnection } from "../grpc-watch.js";
import { MiB, RssSampler } from "../rss.js";
import { type Figure, planWithin, repetitions, rssFigure, type Scenario, sleep } from "../scenario.js";
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

    const grpc = Array.from({ length: connections.length }, () => new GrpcWatchConnection(weftd.address));

    /** One way of receiving the streams, measured over its own repetitions. */
    const measure = async (receiver: Receiver, budgetS: number): Promise<Samples> => {
      const out: Samples = { p50: [], p99: [], max: [], rate: [], peak: [], weftdCpu: [], receiverCpu: [] };
      let reps = sizes.reps;
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
          let counted = false;
          const onEvent = (event: RunEvent | undefined) => {
            if (event === undefined) return;
            const received = Date.now();
            // Sequences 1 and 2 (run started, first task queued) came before the worker started: history.
            if (event.sequence <= 2n) {
              if (event.sequence === 2n && !counted) {
                counted = true;
                caughtUp++;
              }
              return;
            }
            latencies.push(received - timestampMs(event.time as Timestamp));
          };
          if (receiver === "grpc") {
            const c = grpc[i % grpc.length] as GrpcWatchConnection;
            await c.watch(runId, (m) => onEvent(m.event), abort.signal);
          } else {
            const c = connections[i % connections.length] as WorkflowClient;
            for await (const { event } of c.watchRun({ runId }, { signal: abort.signal })) onEvent(event);
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
          const liveS = Math.max(
            elapsed / 1000,
            (weftdCpu / 1000) * scale,
            ((used.bench ?? 0) / 1000) * scale,
          );
          const plan = planWithin(budgetS, { reps: sizes.reps, tasks: W }, attachS * scale + liveS + 2, {
            mayShrinkTasks: false,
          });
          reps = plan.reps;
          if (plan.note !== undefined) {
            ctx.log(plan.note);
            planNotes.push(`${RECEIVERS[receiver]}: ${plan.note}`);
          }
          continue;
        }
        const l = latencyPercentiles(latencies);
        out.p50.push(l.p50);
        out.p99.push(l.p99);
        out.max.push(l.max);
        out.rate.push((latencies.length / elapsed) * 1000);
        out.peak.push(peak / MiB);
        out.weftdCpu.push((weftdCpu / latencies.length) * 1000);
        out.receiverCpu.push(((used.bench ?? 0) / Math.max(1, latencies.length)) * 1000);
        ctx.log(
          `${receiver} rep ${rep}: ${latencies.length} deliveries in ${elapsed} ms, p50 ${l.p50.toFixed(0)} ms, p99 ${l.p99.toFixed(0)} ms, max ${l.max.toFixed(0)} ms, ` +
            `weftd ${((weftdCpu / latencies.length) * 1000).toFixed(0)} µs CPU per delivery, peak RSS ${(peak / MiB).toFixed(0)} MiB`,
        );
      }
      return out;
    };

    const planNotes: string[] = [];
    const lean = await measure("grpc", sizes.budgetS.watchers / 2);
    const sdk = await measure("connect", sizes.budgetS.watchers / 2);
    for (const c of grpc) c.close();
    const reps = lean.p50.length;
    const w = W.toLocaleString("en-US");
    return {
      setup: [
        `${w} WatchRun streams on one run, opened from the bench process over ${connections.length} HTTP/2 connections (${STREAMS_PER_CONNECTION} streams each), all attached before the run's first task starts; weftd started with \`--max-streams-per-client ${W * 2}\` since they all come from one address.`,
        `The run: a chain of ${L} tasks whose handler sleeps ${sizes.watchTaskMs} ms (worker in a separate process), about ${3 * L + 1} live events, each delivered to every watcher.`,
        "Delivery latency = the bench's Date.now() on receipt − the event's `time` (set by weftd when the step ran, millisecond resolution, same machine clock); the live events of every watcher are pooled per repetition.",
        `Two receivers, measured in turn against the same weftd: ${RECEIVERS.grpc} (the target's figure: on these two shared cores every microsecond a receiver spends is taken from weftd and shows up as delivery latency, while real watchers run on their own machines), then ${RECEIVERS.connect}, as an application using the SDK would receive them.`,
        `${repetitions(reps)} per receiver after a warm-up with a tenth of the watchers.`,
      ],
      figures: [
        // The Connect-ES figures keep the keys these figures had before the minimal receiver was
        // added, so that the before/after comparison sets like against like.
        {
          key: "grpc_delivery_p50_ms",
          label: `event delivery p50, ${w} watchers`,
          unit: "ms",
          samples: lean.p50,
          digits: 1,
        },
        {
          key: "grpc_delivery_p99_ms",
          label: `event delivery p99, ${w} watchers`,
          unit: "ms",
          samples: lean.p99,
          digits: 1,
          target: { op: "<=", value: 50, on: "median", text: "p99 ≤ 50 ms with 1,000 watchers" },
        },
        {
          key: "grpc_delivery_max_ms",
          label: "event delivery max",
          unit: "ms",
          samples: lean.max,
          digits: 1,
        },
        {
          key: "grpc_deliveries_per_s",
          label: "events delivered per second (all watchers)",
          unit: "events/s",
          samples: lean.rate,
        },
        {
          key: "grpc_weftd_cpu_us_per_delivery",
          label: "weftd CPU per delivered event",
          unit: "µs",
          samples: lean.weftdCpu,
          digits: 1,
        },
        {
          key: "grpc_receiver_cpu_us_per_delivery",
          label: "receiving side (the bench process) CPU per delivered event",
          unit: "µs",
          samples: lean.receiverCpu,
          digits: 1,
        },
        rssFigure(`weftd peak RSS with ${w} watchers`, [...lean.peak, ...sdk.peak]),
        ...receiverFigures(sdk, w),
      ],
      tables: [],
      notes: planNotes,
    };
  },
};

/** The figures of the Connect-ES receiver. */
function receiverFigures(sdk: Samples, w: string): Figure[] {
  const label = (text: string) => `Connect-ES receiver: ${text}`;
  return [
    {
      key: "delivery_p50_ms",
      label: label(`event delivery p50, ${w} watchers`),
      unit: "ms",
      samples: sdk.p50,
      digits: 1,
    },
    {
      key: "delivery_p99_ms",
      label: label(`event delivery p99, ${w} watchers`),
      unit: "ms",
      samples: sdk.p99,
      digits: 1,
    },
    { key: "delivery_max_ms", label: label("event delivery max"), unit: "ms", samples: sdk.max, digits: 1 },
    {
      key: "deliveries_per_s",
      label: label("events delivered per second"),
      unit: "events/s",
      samples: sdk.rate,
    },
    {
      key: "weftd_cpu_us_per_delivery",
      label: label("weftd CPU per delivered event"),
      unit: "µs",
      samples: sdk.weftdCpu,
      digits: 1,
    },
    {
      key: "bench_cpu_us_per_delivery",
      label: label("receiving side CPU per delivered event"),
      unit: "µs",
      samples: sdk.receiverCpu,
      digits: 1,
    },
  ];
}

type Receiver = "grpc" | "connect";

const RECEIVERS: Record<Receiver, string> = {
  grpc: "a minimal gRPC receiver (node:http2 and protobuf-es, `bench/src/grpc-watch.ts`)",
  connect: "Connect-ES clients (`createGrpcTransport`, async iteration of each stream)",
};

interface Samples {
  p50: number[];
  p99: number[];
  max: number[];
  rate: number[];
  peak: number[];
  weftdCpu: number[];
  receiverCpu: number[];
}
