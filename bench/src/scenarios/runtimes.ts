import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { RunStatus } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { parallelWorkflow, type WorkflowClient, workflowClient } from "../clients.js";
import { CpuMeter } from "../cpu.js";
import { BENCH_DIR, REPO_ROOT, TSX_LOADER } from "../paths.js";
import { type Figure, repetitions, type Scenario, sleep } from "../scenario.js";
import { summarize } from "../stats.js";

const run = promisify(execFile);

/**
 * Tasks of the warm-up run each worker process gets before it is measured; the first one's has as
 * many tasks as a measured run, so that a fresh weftd's hot paths are optimised before any figure.
 */
const WARM_UP_TASKS = 500;
/** How often the bench asks ListRuns whether the measured run has finished. */
const FINISHED_POLL_MS = 10;
const PYTHON = `${REPO_ROOT}workers/python/.venv/bin/python`;

interface Runtime {
  id: "ts" | "python" | "go";
  name: string;
  /** The command that starts the worker (its flags follow), or why the runtime is not measured. */
  command: () => Promise<string[] | { missing: string }>;
}

const RUNTIMES: Runtime[] = [
  {
    id: "ts",
    name: "TypeScript (@weft/worker)",
    command: async () => [process.execPath, "--import", TSX_LOADER, `${BENCH_DIR}src/child/ts-worker.ts`],
  },
  {
    id: "python",
    name: "Python (weft-worker, grpcio)",
    command: async () =>
      existsSync(PYTHON)
        ? [PYTHON, `${BENCH_DIR}src/child/py_worker.py`]
        : { missing: `${PYTHON} is missing (make the venv as the README's Tests section says)` },
  },
  {
    id: "go",
    name: "Go (package weft, grpc-go)",
    command: async () => {
      const binary = join(mkdtempSync(join(tmpdir(), "weft-bench-go-")), "weft-bench-worker");
      try {
        await run("go", ["build", "-o", binary, "./cmd/weft-bench-worker"], {
          cwd: `${REPO_ROOT}workers/go`,
        });
      } catch (err) {
        return { missing: `go build failed: ${(err as Error).message.split("\n")[0]}` };
      }
      return [binary];
    },
  },
];

/** Starts a worker process; it runs until SIGTERM. */
function startWorker(
  command: string[],
  address: string,
  queue: string,
  concurrency: number,
  stream: boolean,
) {
  const [file, ...args] = command;
  const child = spawn(
    file ?? "",
    [
      ...args,
      "--address",
      address,
      "--queue",
      queue,
      "--concurrency",
      String(concurrency),
      ...(stream ? [] : ["--no-stream"]),
    ],
    { cwd: REPO_ROOT, env: { ...process.env, WEFT_LOG_LEVEL: "warn" }, stdio: ["ignore", "ignore", "pipe"] },
  );
  let errors = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    errors = (errors + chunk.toString()).slice(-4000);
  });
  return { child, errors: () => errors };
}

async function stopWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Triggers `workflow` and resolves once ListRuns shows its run finished; the run's time in ms. */
async function runToEnd(client: WorkflowClient, workflow: string, limitMs: number, why: () => string) {
  const t0 = performance.now();
  const { run: started } = await client.trigger({ workflow });
  for (;;) {
    const { runs } = await client.listRuns({ workflow, pageSize: 1 });
    const latest = runs[0];
    if (latest?.id === started?.id && latest?.status !== RunStatus.RUNNING) {
      if (latest?.status !== RunStatus.SUCCEEDED)
        throw new Error(`run of ${workflow} ended ${latest?.status}`);
      return performance.now() - t0;
    }
    if (performance.now() - t0 > limitMs)
      throw new Error(`run of ${workflow} did not finish in ${limitMs} ms; ${why()}`);
    await sleep(FINISHED_POLL_MS);
  }
}

/**
 * Scenario 8 (a diagnostic, no target): one run of N no-op tasks through a worker of each runtime —
 * TypeScript, Python, Go — each taking tasks on a Work stream and, for comparison, by polling.
 */
export const runtimes: Scenario = {
  id: "runtimes",
  title: "8. Worker runtimes",
  async run(ctx) {
    const { sizes } = ctx;
    const n = sizes.runtimeTasks;
    const concurrency = sizes.workerConcurrency;
    const weftd = await ctx.startWeftd();
    const client = workflowClient(weftd.address);
    const figures: Figure[] = [];
    const rows: string[][] = [];
    const missing: string[] = [];
    let warmUpTasks = n;
    for (const runtime of RUNTIMES) {
      const command = await runtime.command();
      if (!Array.isArray(command)) {
        missing.push(`${runtime.name}: not measured: ${command.missing}.`);
        ctx.log(`${runtime.name}: not measured (${command.missing})`);
        continue;
      }
      for (const stream of [true, false]) {
        const mode = stream ? "Work stream" : "PollTask + CompleteTasks";
        const queue = `rt-${runtime.id}-${stream ? "stream" : "poll"}`;
        await client.submitWorkflow({ definition: parallelWorkflow(`${queue}-warm`, queue, warmUpTasks) });
        warmUpTasks = WARM_UP_TASKS;
        await client.submitWorkflow({ definition: parallelWorkflow(queue, queue, n) });
        const worker = startWorker(command, weftd.address, queue, concurrency, stream);
        const why = () => `worker stderr: ${worker.errors() || "(empty)"}`;
        const tps: number[] = [];
        const workerCpu: number[] = [];
        const weftdCpu: number[] = [];
        try {
          // The warm-up run also waits out the worker's start.
          await runToEnd(client, `${queue}-warm`, 60_000, why);
          for (let rep = 1; rep <= sizes.reps; rep++) {
            const cpu = new CpuMeter({ worker: worker.child.pid ?? 0, weftd: weftd.pid }).start();
            const ms = await runToEnd(client, queue, 300_000, why);
            const used = cpu.stop();
            tps.push(n / (ms / 1000));
            workerCpu.push((used.worker ?? 0) / n);
            weftdCpu.push((used.weftd ?? 0) / n);
            ctx.log(
              `${runtime.name}, ${mode}, rep ${rep}: ${tps.at(-1)?.toFixed(0)} tasks/s; CPU per task: worker ${workerCpu.at(-1)?.toFixed(3)} ms, weftd ${weftdCpu.at(-1)?.toFixed(3)} ms`,
            );
          }
        } finally {
          await stopWorker(worker.child);
        }
        const key = `${runtime.id}_${stream ? "stream" : "poll"}`;
        figures.push(
          {
            key: `runtime_${key}_tps`,
            label: `${runtime.name}, ${mode}`,
            unit: "tasks/s",
            samples: tps,
            digits: 0,
          },
          {
            key: `runtime_${key}_worker_cpu_ms`,
            label: `${runtime.name}, ${mode}: worker CPU per task`,
            unit: "ms",
            samples: workerCpu,
            digits: 3,
          },
          {
            key: `runtime_${key}_weftd_cpu_ms`,
            label: `${runtime.name}, ${mode}: weftd CPU per task`,
            unit: "ms",
            samples: weftdCpu,
            digits: 3,
          },
        );
        rows.push([
          runtime.name,
          mode,
          summarize(tps).median.toFixed(0),
          summarize(workerCpu).median.toFixed(3),
          summarize(weftdCpu).median.toFixed(3),
        ]);
      }
    }
    const N = n.toLocaleString("en-US");
    return {
      setup: [
        `One run of ${N} parallel no-op tasks through one worker process of each runtime (concurrency ${concurrency}), first on a Work stream (each runtime's default), then polling with PollTask and completing with CompleteTasks; ${repetitions(sizes.reps)} each, after a warm-up run on the same worker process (${WARM_UP_TASKS} tasks; ${N} for the first, which also warms the fresh weftd up).`,
        `Time: from the Trigger call to ListRuns showing the run SUCCEEDED (asked every ${FINISHED_POLL_MS} ms). CPU per task: the worker process's and weftd's CPU time over the run, from /proc.`,
        "Workers: bench/src/child/ts-worker.ts, bench/src/child/py_worker.py (the venv of workers/python), workers/go/cmd/weft-bench-worker (built with go build); one weftd, the bench's Redis.",
      ],
      figures,
      tables: [
        {
          title: "Medians",
          header: ["runtime", "protocol", "tasks/s", "worker CPU per task (ms)", "weftd CPU per task (ms)"],
          rows,
        },
      ],
      notes: missing,
    };
  },
};
