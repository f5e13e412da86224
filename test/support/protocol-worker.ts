import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { REPO_ROOT } from "./paths.js";
import { waitFor } from "./wait-for.js";

/** One line a protocol worker printed (see test/fixtures/protocol-worker.ts). */
export interface ProtocolWorkerEvent {
  ev: "start" | "task" | "done" | "error";
  workerId: string;
  runId?: string;
  taskId?: string;
  attempt?: number;
  code?: string;
  call?: string;
  message?: string;
}

/** A worker process written against the protocol alone. */
export interface ProtocolWorker {
  readonly pid: number;
  readonly workerId: string;
  readonly events: readonly ProtocolWorkerEvent[];
  /** SIGSTOP: frozen, its connections left open. */
  freeze(): void;
  /** SIGCONT. */
  thaw(): void;
  /** kill -9, and waits for the exit. */
  kill(): Promise<void>;
}

const TSX_LOADER = pathToFileURL(`${REPO_ROOT}node_modules/tsx/dist/esm/index.mjs`).href;
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Options of {@link spawnProtocolWorker}. */
export interface ProtocolWorkerOptions {
  address: string;
  queue: string;
  /** One Work stream, or PollTask/CompleteTask loops. */
  mode: "stream" | "poll";
  /** Credits of the stream, or parallel poll loops. @defaultValue 8 */
  credits?: number;
  workerId?: string;
  /** How long each task is held before its output is sent, without heartbeats. @defaultValue 0 */
  holdMs?: number;
  /** Runs the process inside this network namespace (`ip netns exec`). */
  netns?: string;
}

/** Starts test/fixtures/protocol-worker.ts and waits until it is polling. */
export async function spawnProtocolWorker(options: ProtocolWorkerOptions): Promise<ProtocolWorker> {
  const workerId = options.workerId ?? `protocol-${Math.random().toString(36).slice(2, 8)}`;
  const args = [
    "--import",
    TSX_LOADER,
    `${REPO_ROOT}test/fixtures/protocol-worker.ts`,
    options.address,
    options.queue,
    options.mode,
    String(options.credits ?? 8),
    workerId,
    String(options.holdMs ?? 0),
  ];
  const [command, argv] =
    options.netns === undefined
      ? [process.execPath, args]
      : ["ip", ["netns", "exec", options.netns, process.execPath, ...args]];
  const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  const events: ProtocolWorkerEvent[] = [];
  let stderr = "";
  createInterface({ input: child.stdout }).on("line", (line) => {
    try {
      events.push(JSON.parse(line) as ProtocolWorkerEvent);
    } catch {
      stderr += `${line}\n`;
    }
  });
  child.stderr.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  void exited.then(() => running.delete(child));
  await waitFor(() => events.some((e) => e.ev === "start") || child.exitCode !== null, {
    message: `protocol worker ${workerId} on ${options.queue} to start`,
    timeoutMs: 20_000,
  });
  if (child.exitCode !== null) throw new Error(`protocol worker exited at start:\n${stderr}`);
  return {
    pid: child.pid ?? 0,
    workerId,
    events,
    freeze: () => child.kill("SIGSTOP"),
    thaw: () => child.kill("SIGCONT"),
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}
