import { type ChildProcess, spawn } from "node:child_process";
import { pathToFileURL } from "node:url";
import { REPO_ROOT } from "./paths.js";
import { waitFor } from "./wait-for.js";

/** A TypeScript worker process (workers/typescript/src/bin.ts), polling. */
export interface WorkerProcess {
  readonly pid: number;
  readonly output: () => string;
  /** kill -9, and waits for the exit. */
  kill(): Promise<void>;
  /** SIGTERM, and waits for the exit. */
  stop(): Promise<void>;
}

const TSX_LOADER = pathToFileURL(`${REPO_ROOT}node_modules/tsx/dist/esm/index.mjs`).href;
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Starts a worker with the test handlers (test/fixtures/handlers.ts) and waits until it polls. */
export async function spawnWorker(options: {
  address: string;
  queue: string;
  concurrency?: number;
  workerId?: string;
  env?: NodeJS.ProcessEnv;
  /** More flags, e.g. `["--ca", file, "--token", token]`. */
  args?: string[];
}): Promise<WorkerProcess> {
  const args = [
    "--import",
    TSX_LOADER,
    `${REPO_ROOT}workers/typescript/src/bin.ts`,
    "--address",
    options.address,
    "--queue",
    options.queue,
    "--handlers",
    `${REPO_ROOT}test/fixtures/handlers.ts`,
    "--concurrency",
    String(options.concurrency ?? 4),
    ...(options.workerId === undefined ? [] : ["--worker-id", options.workerId]),
    ...(options.args ?? []),
  ];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, WEFT_LOG_LEVEL: "info", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  let output = "";
  child.stdout.on("data", (b: Buffer) => {
    output += b.toString();
  });
  child.stderr.on("data", (b: Buffer) => {
    output += b.toString();
  });
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      running.delete(child);
      resolve();
    });
  });
  await waitFor(() => output.includes('"msg":"worker polling"') || child.exitCode !== null, {
    message: `worker on queue ${options.queue} to start polling`,
    timeoutMs: 20_000,
  });
  if (child.exitCode !== null) throw new Error(`worker exited at start:\n${output}`);
  const waitExit = async (what: string) => {
    await waitFor(() => child.exitCode !== null || child.signalCode !== null, {
      message: what,
      timeoutMs: 15_000,
    });
    await exited;
  };
  return {
    pid: child.pid ?? 0,
    output: () => output,
    async kill() {
      child.kill("SIGKILL");
      await waitExit("the killed worker to exit");
    },
    async stop() {
      child.kill("SIGTERM");
      await waitExit(`worker ${child.pid} to stop after SIGTERM`);
    },
  };
}
