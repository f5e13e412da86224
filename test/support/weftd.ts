import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { REPO_ROOT } from "./paths.js";
import { waitFor } from "./wait-for.js";

/** One JSON log line of weftd. */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** How a process ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Options of {@link spawnWeftd}. */
export interface SpawnWeftdOptions {
  /** Redis to use (`--redis-url`); without it weftd starts its private redis-server under `cwd`. */
  redisUrl?: string;
  /**
   * Working directory of weftd.
   * @defaultValue the repository root
   */
  cwd?: string;
  /**
   * Key prefix.
   * @defaultValue `test-${randomUUID()}`
   */
  prefix?: string;
  /** More flags, e.g. `["--max-request-bytes", "64KiB"]`. */
  args?: string[];
  /**
   * Serve with authentication: leave out `--insecure` (then the configuration file must list tokens).
   * @defaultValue false
   */
  auth?: boolean;
  /** More environment variables. */
  env?: NodeJS.ProcessEnv;
  /**
   * Run the compiled daemon (`pnpm build` must have made daemon/dist and sdk/dist) as `pnpm start` does,
   * instead of the TypeScript sources.
   * @defaultValue false
   */
  compiled?: boolean;
  /**
   * How long to wait for the "weftd listening" line.
   * @defaultValue 30000
   */
  startTimeoutMs?: number;
}

/** A weftd child process, started and listening. */
export interface WeftdProcess {
  readonly pid: number;
  /** API port. */
  readonly port: number;
  /** /metrics and /healthz port. */
  readonly metricsPort: number;
  /** "127.0.0.1:<port>", for gRPC clients. */
  readonly address: string;
  /** "http://127.0.0.1:<port>", for Connect and fetch. */
  readonly baseUrl: string;
  /** "http://127.0.0.1:<metricsPort>". */
  readonly metricsUrl: string;
  readonly prefix: string;
  /** Every JSON log line so far. */
  readonly logs: readonly LogLine[];
  /** Everything written to stdout and stderr so far. */
  readonly output: string;
  /** The exit, once it happened. */
  readonly exit: ExitInfo | undefined;
  /** Waits for a log line matching `predicate`. */
  waitForLog(predicate: (line: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>;
  /** Waits for the process to exit; fails with its output after `timeoutMs`. */
  waitForExit(timeoutMs?: number): Promise<ExitInfo>;
  /** Sends `signal` (default SIGTERM) and waits for the exit. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitInfo>;
  /** kill -9, and waits for the exit. */
  kill(): Promise<ExitInfo>;
}

/** The test runner's environment without any WEFT_* or REDIS_URL that would change weftd's configuration. */
function inheritedEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("WEFT_") && name !== "REDIS_URL"),
  );
}

/** tsx's ESM loader by absolute URL, so that weftd can run from any working directory. */
const TSX_LOADER = pathToFileURL(`${REPO_ROOT}node_modules/tsx/dist/esm/index.mjs`).href;

/** The command line that runs weftd from source with `args`: `[node, [...flags]]`. */
export function weftdCommand(args: string[]): [string, string[]] {
  return [process.execPath, ["--import", TSX_LOADER, `${REPO_ROOT}daemon/src/main.ts`, ...args]];
}

/** The command line of `pnpm start` with `args`: the compiled daemon, resolving @weft/sdk to sdk/dist. */
export function compiledWeftdCommand(args: string[]): [string, string[]] {
  return [process.execPath, ["--conditions=weft-dist", `${REPO_ROOT}daemon/dist/main.js`, ...args]];
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * Spawns `node --import tsx/esm daemon/src/main.ts --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 …`
 * and resolves once it logged "weftd listening" with its ports.
 */
export async function spawnWeftd(options: SpawnWeftdOptions): Promise<WeftdProcess> {
  const prefix = options.prefix ?? `test-${randomUUID()}`;
  const [node, args] = (options.compiled === true ? compiledWeftdCommand : weftdCommand)([
    "--addr",
    "127.0.0.1:0",
    "--metrics-addr",
    "127.0.0.1:0",
    "--prefix",
    prefix,
    ...(options.redisUrl === undefined ? [] : ["--redis-url", options.redisUrl]),
    ...(options.auth === true ? [] : ["--insecure"]),
    ...(options.args ?? []),
  ]);
  const child = spawn(node, args, {
    cwd: options.cwd ?? REPO_ROOT,
    env: { ...inheritedEnv(), WEFT_LOG_LEVEL: "debug", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const logs: LogLine[] = [];
  let output = "";
  let exit: ExitInfo | undefined;
  // Set once the test asks weftd to stop: any other exit is a crash, whose output is printed.
  let stopping = false;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once("close", (code, signal) => {
      exit = { code, signal };
      running.delete(child);
      if (!stopping) {
        process.stderr.write(
          `weftd (pid ${child.pid}) exited on its own (${JSON.stringify(exit)}); its last output:\n` +
            `${output.slice(-20_000)}\n`,
        );
      }
      resolve(exit);
    });
  });
  createInterface({ input: child.stdout }).on("line", (line) => {
    output += `${line}\n`;
    try {
      const parsed = JSON.parse(line) as LogLine;
      if (typeof parsed.msg === "string") logs.push(parsed);
    } catch {
      // Not JSON (e.g. a stack trace): kept in `output` only.
    }
  });
  child.stderr.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });

  const describe = () => `weftd (pid ${child.pid}) output:\n${output}`;
  const waitForExit = async (timeoutMs = 15_000): Promise<ExitInfo> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`weftd did not exit within ${timeoutMs}ms\n${describe()}`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };
  const waitForLog = async (predicate: (line: LogLine) => boolean, what: string, timeoutMs = 10_000) => {
    // Ends as soon as weftd exits: nothing more will be logged.
    const found = await waitFor(
      () => logs.find(predicate) ?? (exit !== undefined ? ("exited" as const) : undefined),
      {
        timeoutMs,
        message: `weftd to log ${what}\n${describe()}`,
      },
    );
    if (found === "exited")
      throw new Error(`weftd exited (${JSON.stringify(exit)}) before logging ${what}\n${describe()}`);
    return found;
  };

  let listening: LogLine;
  try {
    listening = await waitForLog(
      (l) => l.msg === "weftd listening",
      '"weftd listening"',
      options.startTimeoutMs ?? 30_000,
    );
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  const port = listening.port as number;
  const metricsPort = listening.metricsPort as number;
  return {
    pid: child.pid as number,
    port,
    metricsPort,
    address: `127.0.0.1:${port}`,
    baseUrl: `http://127.0.0.1:${port}`,
    metricsUrl: `http://127.0.0.1:${metricsPort}`,
    prefix,
    logs,
    get output() {
      return output;
    },
    get exit() {
      return exit;
    },
    waitForLog,
    waitForExit,
    async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs?: number) {
      stopping = true;
      if (exit === undefined) child.kill(signal);
      return waitForExit(timeoutMs);
    },
    async kill() {
      stopping = true;
      if (exit === undefined) child.kill("SIGKILL");
      return waitForExit(5000);
    },
  };
}
