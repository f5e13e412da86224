import type { PeerShape } from "../child/protocol.js";
import { WorkerChild as Child, type WorkerChild } from "../children.js";
import { chainWorkflow, fanWorkflow, parallelWorkflow, workflowClient } from "../clients.js";
import { CpuMeter, redisPid } from "../cpu.js";
import { fmt } from "../report.js";
import { MiB, RssSampler } from "../rss.js";
import { type Figure, repetitions, rssFigure, type Scenario, type Target } from "../scenario.js";
import { latencyPercentiles, summarize } from "../stats.js";

/** The peer's queue and BullMQ prefix (Weft's own jobs live under weftd's prefix). */
const PEER_PREFIX = "bench-peer";
const QUEUE = "peer";
type Side = "weft" | "flow" | "weft-per-run";
const SIDE_NAME: Record<Side, string> = {
  weft: "Weft",
  flow: "BullMQ FlowProducer",
  "weft-per-run": "Weft, a WatchRun per wait, unbatched triggers",
};

/** The processes of one side whose CPU and RSS are counted. */
interface SideProcesses {
  worker: WorkerChild;
  client: WorkerChild;
  /** weftd, on Weft's side. */
  daemon?: number;
  /** weftd's /metrics, on Weft's side. */
  metrics?: () => Promise<Map<string, number>>;
}

/** What one turn of one side measured. */
interface Turn {
  ms: number;
  tasks: number;
  /** CPU ms per task, by process. */
  cpuPerTask: Record<string, number>;
  /** Peak RSS during the turn, MiB, by process. */
  rssMiB: Record<string, number>;
  /** Read and write system calls per task, by process. */
  syscallsPerTask: Record<string, number>;
  /** Weft: jobs fetched by polls and by completions, and those put back unused, per task. */
  dispatch?: { byPolls: number; byCompletions: number; returned: number };
  latency?: { start: number[]; result: number[] };
}

const ratioTarget = (op: Target["op"], value: number, text: string): Target => ({
  op,
  value,
  on: "median",
  text,
});

/**
 * Runs one shape on one side: CPU of every process of the side (Redis included), peak RSS of each,
 * and the time from the first start call to the last result the client saw.
 */
async function turn(
  side: SideProcesses,
  redis: number,
  shape: PeerShape,
  tasks: number,
  timeoutMs: number,
): Promise<Turn> {
  const pids: Record<string, number> = { redis, worker: side.worker.pid, client: side.client.pid };
  if (side.daemon !== undefined) pids.weftd = side.daemon;
  const samplers = Object.fromEntries(
    Object.entries(pids).map(([k, pid]) => [k, new RssSampler(pid, 50).start()]),
  );
  const before = await side.metrics?.();
  const meter = new CpuMeter(pids).start();
  const went = await side.client.go(shape, timeoutMs);
  const usage = meter.usage();
  const after = await side.metrics?.();
  const delta = (name: string) => ((after?.get(name) ?? 0) - (before?.get(name) ?? 0)) / tasks;
  const rssMiB = Object.fromEntries(Object.entries(samplers).map(([k, s]) => [k, s.stop().peak / MiB]));
  return {
    ms: went.ms,
    tasks,
    cpuPerTask: Object.fromEntries(Object.entries(usage).map(([k, u]) => [k, u.cpuMs / tasks])),
    rssMiB,
    syscallsPerTask: Object.fromEntries(
      Object.entries(usage).map(([k, u]) => [k, (u.readCalls + u.writeCalls) / tasks]),
    ),
    ...(went.latency === undefined ? {} : { latency: went.latency }),
    ...(after === undefined
      ? {}
      : {
          dispatch: {
            byPolls: delta('weft_jobs_fetched_total{via="poll"}'),
            byCompletions: delta('weft_jobs_fetched_total{via="completion"}'),
            returned: delta("weft_held_jobs_returned_total"),
          },
        }),
  };
}

/** Peaks of weftd's heap in use, heap reserved and external memory (its /metrics, every 100 ms). */
function sampleHeap(weftd: { metrics(): Promise<Map<string, number>> }) {
  const peaks = { used: 0, total: 0, external: 0 };
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    weftd
      .metrics()
      .then((m) => {
        peaks.used = Math.max(peaks.used, m.get("nodejs_heap_used_bytes") ?? 0);
        peaks.total = Math.max(peaks.total, m.get("nodejs_heap_total_bytes") ?? 0);
        peaks.external = Math.max(peaks.external, m.get("nodejs_external_memory_bytes") ?? 0);
      })
      .catch(() => {})
      .finally(() => {
        busy = false;
      });
  }, 100);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      return peaks;
    },
  };
}

const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
const median = (values: number[]) => summarize(values).median;

/**
 * The peer: what a user would write instead on the same Redis, BullMQ's FlowProducer running the same
 * DAG shapes, with the same waiting for results on both sides, in turns within the run.
 */
export const peer: Scenario = {
  id: "peer",
  title: "12. Against BullMQ FlowProducer",
  async run(ctx) {
    const { sizes } = ctx;
    const p = sizes.peer;
    const weftd = await ctx.startWeftd();
    const rss = new RssSampler(weftd.pid).start();
    const heap = sampleHeap(weftd);
    const admin = workflowClient(weftd.address);
    await admin.submitWorkflow({ definition: chainWorkflow("chain3", QUEUE, 3) });
    await admin.submitWorkflow({ definition: fanWorkflow(`fan${p.fanWidth}`, QUEUE, p.fanWidth) });
    await admin.submitWorkflow({ definition: fanWorkflow("fan50", QUEUE, 50) });
    await admin.submitWorkflow({ definition: parallelWorkflow("single", QUEUE, 1) });
    const redis = await redisPid(ctx.redis);

    // --peer-per-run adds Weft with the SDK as it was before issue 25 (a WatchRun stream per wait,
    // a Trigger call per trigger()), in the same turns: what the shared stream and batching change.
    const SIDES: Side[] = ctx.flags.peerPerRun ? ["weft", "flow", "weft-per-run"] : ["weft", "flow"];
    const start = async (side: Side): Promise<SideProcesses> => {
      const sdk = side === "weft-per-run" ? { sharedWatch: false, batchTriggers: false } : {};
      const [worker, client] =
        side !== "flow"
          ? await Promise.all([
              Child.peerWorker({
                kind: "weft",
                address: weftd.address,
                queue: QUEUE,
                concurrency: sizes.workerConcurrency,
              }),
              Child.peerClient({ kind: "weft", address: weftd.address, queue: QUEUE, sdk }),
            ])
          : await Promise.all([
              Child.peerWorker({
                kind: "bullmq",
                redisUrl: ctx.redisUrl,
                prefix: PEER_PREFIX,
                queue: QUEUE,
                concurrency: sizes.workerConcurrency,
              }),
              Child.peerClient({ kind: "bullmq", redisUrl: ctx.redisUrl, prefix: PEER_PREFIX, queue: QUEUE }),
            ]);
      ctx.defer(() => client.stop());
      ctx.defer(() => worker.stop());
      return side !== "flow"
        ? { worker, client, daemon: weftd.pid, metrics: () => weftd.metrics() }
        : { worker, client };
    };
    const procs = {} as Record<Side, SideProcesses>;
    for (const side of SIDES) procs[side] = await start(side);

    type ShapeId = "batched" | "each" | "fan" | "latency";
    const shapeOf = (id: ShapeId, round: string): { shape: PeerShape; tasks: number } => {
      switch (id) {
        case "batched":
          return { shape: { kind: "chains-batched", runs: p.runs, round }, tasks: p.runs * 3 };
        case "each":
          return { shape: { kind: "chains-each", runs: p.runs, lanes: p.lanes, round }, tasks: p.runs * 3 };
        case "fan":
          return { shape: { kind: "fan", width: p.fanWidth, round }, tasks: p.fanWidth + 2 };
        case "latency":
          return { shape: { kind: "latency", samples: p.latencySamples, round }, tasks: p.latencySamples };
      }
    };
    const SHAPES: ShapeId[] = ["batched", "each", "fan", "latency"];

    // Warm-up: a little of every shape on every side (JIT, connections, BullMQ's scripts).
    ctx.log("warm-up");
    for (const side of SIDES) {
      for (const shape of [
        { kind: "chains-batched", runs: 200, round: "w" },
        { kind: "chains-each", runs: 200, lanes: p.lanes, round: "w" },
        { kind: "fan", width: 50, round: "w" },
        { kind: "latency", samples: 10, round: "w" },
      ] satisfies PeerShape[]) {
        await procs[side].client.go(shape, 120_000);
      }
    }

    const empty = () => Object.fromEntries(SIDES.map((side) => [side, [] as Turn[]])) as Record<Side, Turn[]>;
    const turns: Record<ShapeId, Record<Side, Turn[]>> = {
      batched: empty(),
      each: empty(),
      fan: empty(),
      latency: empty(),
    };
    // Rounds until the budget is spent (the first one always runs): one round's time predicts the next.
    const started = Date.now();
    let rounds = 0;
    let note: string | undefined;
    while (rounds < p.rounds) {
      const roundStart = Date.now();
      rounds++;
      // Turns rotate who goes first, so no side always runs on a machine another one warmed.
      const order = SIDES.map((_, i) => SIDES[(i + rounds - 1) % SIDES.length] as Side);
      for (const id of SHAPES) {
        for (const side of order) {
          const { shape, tasks } = shapeOf(id, `r${rounds}`);
          turns[id][side].push(await turn(procs[side], redis, shape, tasks, 600_000));
        }
        ctx.log(
          `round ${rounds} ${id}: ${SIDES.map((side) => {
            const t = turns[id][side].at(-1) as Turn;
            return `${SIDE_NAME[side]} ${fmt(t.ms, 0)} ms, CPU/task ${fmt(sum(t.cpuPerTask), 2)} ms`;
          }).join("; ")}`,
        );
      }
      const roundS = (Date.now() - roundStart) / 1000;
      const leftS = sizes.budgetS.peer - (Date.now() - started) / 1000;
      if (rounds < p.rounds && leftS < roundS) {
        note = `Time budget: ${repetitions(rounds)} instead of ${p.rounds}: a round took ${roundS.toFixed(0)} s, and this scenario has ${sizes.budgetS.peer} s of the full run's 10 minutes.`;
        ctx.log(note);
        break;
      }
    }
    const { peak } = rss.stop();
    const heapPeaks = heap.stop();
    ctx.log(
      `weftd peaks: RSS ${fmt(peak / MiB, 0)} MiB; V8 heap in use ${fmt(heapPeaks.used / MiB, 0)} MiB, reserved ${fmt(heapPeaks.total / MiB, 0)} MiB; external ${fmt(heapPeaks.external / MiB, 0)} MiB`,
    );

    const tps = (t: Turn) => (t.tasks / t.ms) * 1000;
    const perRound = (id: ShapeId, f: (w: Turn, b: Turn) => number) =>
      turns[id].weft.map((w, i) => f(w, turns[id].flow[i] as Turn));
    const lat = (t: Turn, which: "start" | "result", p: "p50" | "p99") =>
      latencyPercentiles(t.latency?.[which] ?? [])[p];
    const R = p.runs.toLocaleString("en-US");
    const W = p.fanWidth.toLocaleString("en-US");

    const figures: Figure[] = [];
    for (const [id, what] of [
      ["batched", `${R} runs of a 3-task chain, batched start, every result awaited`],
      ["each", `${R} runs of a 3-task chain, one start per run, ${p.lanes} in flight`],
    ] as const) {
      figures.push(
        {
          key: `${id}_ratio`,
          label: `Weft / FlowProducer tasks/s, ${what}`,
          unit: "×",
          samples: perRound(id, (w, f) => tps(w) / tps(f)),
          target: ratioTarget(">=", 0.8, "≥ 0.8× FlowProducer"),
        },
        {
          key: `${id}_weft_tps`,
          label: `Weft tasks/s, ${what}`,
          unit: "tasks/s",
          samples: turns[id].weft.map(tps),
        },
        {
          key: `${id}_flow_tps`,
          label: `FlowProducer tasks/s, ${what}`,
          unit: "tasks/s",
          samples: turns[id].flow.map(tps),
        },
        {
          key: `${id}_cpu_ratio`,
          label: `CPU per task, all processes, Weft / FlowProducer (${id === "batched" ? "batched" : "one start per run"})`,
          unit: "×",
          samples: perRound(id, (w, f) => sum(w.cpuPerTask) / sum(f.cpuPerTask)),
          target: ratioTarget("<=", 2, "≤ 2× FlowProducer"),
        },
        {
          key: `${id}_weft_cpu`,
          label: `CPU per task, all processes, Weft (${id})`,
          unit: "ms",
          samples: turns[id].weft.map((t) => sum(t.cpuPerTask)),
        },
        {
          key: `${id}_flow_cpu`,
          label: `CPU per task, all processes, FlowProducer (${id})`,
          unit: "ms",
          samples: turns[id].flow.map((t) => sum(t.cpuPerTask)),
        },
      );
    }
    figures.push(
      {
        key: "fan_ratio",
        label: `1 → ${W} → 1, Weft's time / FlowProducer's`,
        unit: "×",
        samples: perRound("fan", (w, f) => w.ms / f.ms),
        target: ratioTarget("<=", 1, "≤ 1× (at least as fast)"),
      },
      {
        key: "fan_weft_s",
        label: `1 → ${W} → 1, Weft`,
        unit: "s",
        samples: turns.fan.weft.map((t) => t.ms / 1000),
      },
      {
        key: "fan_flow_s",
        label: `1 → ${W} → 1, FlowProducer (a root job, then a tree)`,
        unit: "s",
        samples: turns.fan.flow.map((t) => t.ms / 1000),
      },
      {
        key: "start_p50_ratio",
        label: "trigger → task start p50, Weft / FlowProducer",
        unit: "×",
        samples: perRound("latency", (w, f) => lat(w, "start", "p50") / lat(f, "start", "p50")),
        target: ratioTarget("<=", 2, "≤ 2× FlowProducer"),
      },
      {
        key: "result_p50_ratio",
        label: "trigger → result seen p50, Weft / FlowProducer",
        unit: "×",
        samples: perRound("latency", (w, f) => lat(w, "result", "p50") / lat(f, "result", "p50")),
        target: ratioTarget("<=", 2.5, "≤ 2.5× FlowProducer"),
      },
    );
    for (const side of SIDES) {
      for (const [which, text] of [
        ["start", "trigger → task start"],
        ["result", "trigger → result seen"],
      ] as const) {
        for (const pc of ["p50", "p99"] as const) {
          figures.push({
            key: `${which}_${pc}_${side}`,
            label: `${text} ${pc}, ${SIDE_NAME[side]}`,
            unit: "ms",
            samples: turns.latency[side].map((t) => lat(t, which, pc)),
          });
        }
      }
    }
    figures.push(
      rssFigure("weftd peak RSS during the scenario (2,000 callers awaiting results included)", [peak / MiB]),
    );

    // The peer table: medians over the rounds.
    const m = (id: ShapeId, side: Side, f: (t: Turn) => number) => median(turns[id][side].map(f));
    const ratio = (key: string) => median(figures.find((f) => f.key === key)?.samples ?? []);
    const peerRows: string[][] = [
      [
        `${R} runs of a 3-task chain, batched start, wait for every result`,
        `${fmt(m("batched", "weft", tps), 0)} tasks/s`,
        `${fmt(m("batched", "flow", tps), 0)} tasks/s`,
        `${fmt(ratio("batched_ratio"), 2)}×`,
      ],
      [
        `the same, one start call per run, ${p.lanes} in flight`,
        `${fmt(m("each", "weft", tps), 0)} tasks/s`,
        `${fmt(m("each", "flow", tps), 0)} tasks/s`,
        `${fmt(ratio("each_ratio"), 2)}×`,
      ],
      [
        "CPU per task, all processes, batched",
        `${fmt(
          m("batched", "weft", (t) => sum(t.cpuPerTask)),
          2,
        )} ms`,
        `${fmt(
          m("batched", "flow", (t) => sum(t.cpuPerTask)),
          2,
        )} ms`,
        `${fmt(ratio("batched_cpu_ratio"), 2)}×`,
      ],
      [
        "CPU per task, all processes, one start per run",
        `${fmt(
          m("each", "weft", (t) => sum(t.cpuPerTask)),
          2,
        )} ms`,
        `${fmt(
          m("each", "flow", (t) => sum(t.cpuPerTask)),
          2,
        )} ms`,
        `${fmt(ratio("each_cpu_ratio"), 2)}×`,
      ],
      [
        `1 → ${W} → 1`,
        `${fmt(
          m("fan", "weft", (t) => t.ms / 1000),
          2,
        )} s`,
        `${fmt(
          m("fan", "flow", (t) => t.ms / 1000),
          2,
        )} s (a root job, then a tree)`,
        `${fmt(ratio("fan_ratio"), 2)}×`,
      ],
      [
        "trigger → task start, p50 / p99",
        `${fmt(
          m("latency", "weft", (t) => lat(t, "start", "p50")),
          1,
        )} / ${fmt(
          m("latency", "weft", (t) => lat(t, "start", "p99")),
          1,
        )} ms`,
        `${fmt(
          m("latency", "flow", (t) => lat(t, "start", "p50")),
          1,
        )} / ${fmt(
          m("latency", "flow", (t) => lat(t, "start", "p99")),
          1,
        )} ms`,
        `${fmt(ratio("start_p50_ratio"), 2)}× (p50)`,
      ],
      [
        "trigger → result seen by the caller, p50",
        `${fmt(
          m("latency", "weft", (t) => lat(t, "result", "p50")),
          1,
        )} ms`,
        `${fmt(
          m("latency", "flow", (t) => lat(t, "result", "p50")),
          1,
        )} ms`,
        `${fmt(ratio("result_p50_ratio"), 2)}×`,
      ],
    ];

    // CPU per task and peak RSS of every process, per shape.
    const PROCS = ["client", "weftd", "worker", "redis"];
    const cpuRows: string[][] = [];
    const rssRows: string[][] = [];
    const syscallRows: string[][] = [];
    const dispatchRows: string[][] = [];
    for (const id of SHAPES) {
      for (const side of SIDES) {
        const ts = turns[id][side];
        cpuRows.push([
          `${id}, ${SIDE_NAME[side]}`,
          ...PROCS.map((proc) =>
            side === "flow" && proc === "weftd"
              ? "—"
              : fmt(median(ts.map((t) => t.cpuPerTask[proc] ?? 0)), 3),
          ),
          fmt(median(ts.map((t) => sum(t.cpuPerTask))), 3),
        ]);
        if (side !== "flow") {
          const d = (f: (x: NonNullable<Turn["dispatch"]>) => number) =>
            fmt(median(ts.map((t) => (t.dispatch === undefined ? 0 : f(t.dispatch)))), 3);
          dispatchRows.push([
            `${id}, ${SIDE_NAME[side]}`,
            d((x) => x.byPolls),
            d((x) => x.byCompletions),
            d((x) => x.returned),
          ]);
        }
        syscallRows.push([
          `${id}, ${SIDE_NAME[side]}`,
          ...PROCS.map((proc) =>
            side === "flow" && proc === "weftd"
              ? "—"
              : fmt(median(ts.map((t) => t.syscallsPerTask[proc] ?? 0)), 1),
          ),
        ]);
        rssRows.push([
          `${id}, ${SIDE_NAME[side]}`,
          ...PROCS.map((proc) =>
            side === "flow" && proc === "weftd"
              ? "—"
              : fmt(Math.max(...ts.map((t) => t.rssMiB[proc] ?? 0)), 0),
          ),
        ]);
      }
    }

    return {
      setup: [
        `The same DAG shapes through Weft and through BullMQ's FlowProducer on the same Redis, in turns within the run: ${repetitions(rounds)} (rounds), each running every shape on both sides, the side that goes first alternating; a warm-up of every shape first.`,
        `Weft: weftd, @weft/worker (concurrency ${sizes.workerConcurrency}) and a client process using @weft/sdk (\`triggerMany\` or \`trigger\`, then \`result()\` for every run). FlowProducer: a BullMQ Worker (concurrency ${sizes.workerConcurrency}) and a client process using FlowProducer (\`addBulk\` or \`add\`) and one QueueEvents (\`job.waitUntilFinished(queueEvents)\` for every flow). No-op tasks; jobs kept as Weft keeps its own (an hour or 10,000 completed).`,
        "A chain t0 → t1 → t2 is a flow of depth 3 (BullMQ runs children before their parent). FlowProducer only builds trees, so its 1 → N → 1 is a root job, awaited, then a tree of the sink and its N children.",
        `Latency: ${p.latencySamples} one-task runs one after the other; the task returns the time it started, so trigger → start and trigger → result seen are taken on the machine's clock. CPU is that of every process of the side (its Redis included) during its turn, per task.`,
      ],
      figures,
      tables: [
        {
          title: "Weft against BullMQ FlowProducer (medians of the rounds)",
          header: ["workload", "Weft", "BullMQ FlowProducer", "Weft / FlowProducer"],
          rows: peerRows,
        },
        {
          title: "CPU per task by process, ms (medians)",
          header: ["shape, side", ...PROCS, "all"],
          rows: cpuRows,
        },
        { title: "Peak RSS by process, MiB (worst round)", header: ["shape, side", ...PROCS], rows: rssRows },
        {
          title:
            "How weftd came by its jobs, per task (medians): fetched by polls, fetched ahead by completions, of those put back unused",
          header: ["shape, side", "by polls", "by completions", "put back"],
          rows: dispatchRows,
        },
        {
          title: "Read and write system calls per task, by process (medians)",
          header: ["shape, side", ...PROCS],
          rows: syscallRows,
        },
      ],
      notes: note === undefined ? [] : [note],
    };
  },
};
