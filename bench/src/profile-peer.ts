import { mkdirSync } from "node:fs";
import type { PeerShape } from "./child/protocol.js";
import { WorkerChild } from "./children.js";
import { chainWorkflow, fanWorkflow, parallelWorkflow, workflowClient } from "./clients.js";
import { BENCH_DIR } from "./paths.js";
import { mainThreadProfile, monotonicUs, type ProfileWindow, report } from "./profile.js";
import type { Sizes } from "./scenario.js";
import { startWeftd } from "./weftd.js";

/**
 * `pnpm bench --profile --only peer`: Weft's side of the peer scenario (each shape once, after a
 * warm-up) with weftd and the worker under `node --cpu-prof`, then the top functions of each
 * profile, over the whole run and over each shape.
 */
export async function runPeerProfile(options: {
  redisUrl: string;
  sizes: Sizes;
  weftdArgs: string[];
  log: (message: string) => void;
}): Promise<void> {
  const { sizes, log } = options;
  const p = sizes.peer;
  const dir = `${BENCH_DIR}profiles`;
  mkdirSync(dir, { recursive: true });
  const cpuProf = ["--cpu-prof", "--cpu-prof-dir", dir];
  const weftd = await startWeftd({
    redisUrl: options.redisUrl,
    prefix: "bench",
    args: options.weftdArgs,
    nodeFlags: cpuProf,
  });
  const queue = "peer";
  const admin = workflowClient(weftd.address);
  await admin.submitWorkflow({ definition: chainWorkflow("chain3", queue, 3) });
  await admin.submitWorkflow({ definition: fanWorkflow(`fan${p.fanWidth}`, queue, p.fanWidth) });
  await admin.submitWorkflow({ definition: fanWorkflow("fan50", queue, 50) });
  await admin.submitWorkflow({ definition: parallelWorkflow("single", queue, 1) });
  const worker = await WorkerChild.start(
    "peer-worker",
    { kind: "weft", address: weftd.address, queue, concurrency: sizes.workerConcurrency },
    "weft peer worker",
    cpuProf,
  );
  const client = await WorkerChild.peerClient({ kind: "weft", address: weftd.address, queue, sdk: {} });
  const windows: ProfileWindow[] = [];
  try {
    for (const shape of [
      { kind: "chains-batched", runs: 200, round: "w" },
      { kind: "latency", samples: 10, round: "w" },
    ] satisfies PeerShape[]) {
      await client.go(shape, 120_000);
    }
    for (const [name, shape] of [
      [`${p.runs} chains started in batches`, { kind: "chains-batched", runs: p.runs, round: "p" }],
      [`${p.runs} chains, one start each`, { kind: "chains-each", runs: p.runs, lanes: p.lanes, round: "p" }],
      [`1 → ${p.fanWidth} → 1`, { kind: "fan", width: p.fanWidth, round: "p" }],
      [
        `${p.latencySamples} one-task runs one after the other`,
        { kind: "latency", samples: p.latencySamples, round: "p" },
      ],
    ] as [string, PeerShape][]) {
      const fromUs = monotonicUs();
      const went = await client.go(shape, 600_000);
      windows.push({ name, fromUs, toUs: monotonicUs() });
      log(`  ${name}: ${went.ms.toFixed(0)} ms (under the profiler)`);
    }
  } finally {
    await client.stop();
    await worker.stop();
    await weftd.stop(60_000);
  }
  const texts = [
    report(dir, mainThreadProfile(dir, weftd.pid), "weftd", windows, log),
    report(dir, mainThreadProfile(dir, worker.pid), "worker process", windows, log),
  ];
  process.stdout.write(`${texts.join("\n\n")}\n`);
}
