import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { nodeTs, REPO_ROOT } from "./paths.js";
import { ensurePythonVenv } from "./python-venv.js";
import { which } from "./which.js";

const run = promisify(execFile);

/** How to start one example worker. */
export interface WorkerLaunch {
  /** Program and arguments. */
  command: string;
  args: string[];
  /** Extra environment variables. */
  env?: NodeJS.ProcessEnv;
  /** A step to run first, e.g. compiling (bounded by its own timeout). */
  prepare?: () => Promise<void>;
  /** What `prepare` does, printed with its progress when it is slow. */
  preparing?: string;
}

/** The result of looking for a runtime's toolchain. */
export type Detection = { available: true; launch: WorkerLaunch } | { available: false; reason: string };

/** What detection needs to know. */
export interface RuntimeContext {
  /** weftd's address for the workers. */
  address: string;
  /** weft dev's data folder (for build outputs). */
  dataDir: string;
  /** The Python worker's virtualenv (made when missing). */
  pythonVenv: string;
  env: NodeJS.ProcessEnv;
  /** Prints progress for the user. */
  say(text: string): void;
}

/**
 * One language's example worker: the task queue its example steps use, and how to find and start
 * its toolchain. Add a runtime here to have `weft dev` start it.
 */
export interface WorkerRuntime {
  /** Language name shown to the user. */
  language: string;
  /** Task queue of the example steps written in this language. */
  queue: string;
  /** Looks for the toolchain, the runtime library and the example handlers. */
  detect(ctx: RuntimeContext): Promise<Detection>;
}

/** The TypeScript worker with the examples' TypeScript handlers, serving `queue`. */
export function typescriptWorker(
  queue: string,
  handlers: string,
  workerId: string,
  address: string,
): WorkerLaunch {
  const [command, args] = nodeTs("workers/typescript/src/bin.ts", [
    "--address",
    address,
    "--queue",
    queue,
    "--handlers",
    `${REPO_ROOT}${handlers}`,
    "--worker-id",
    workerId,
    "--shutdown-grace-ms",
    "5000",
  ]);
  return { command, args };
}

/** TypeScript: always there (weft dev itself runs on Node). */
const typescript: WorkerRuntime = {
  language: "TypeScript",
  queue: "ts",
  async detect(ctx) {
    return {
      available: true,
      launch: typescriptWorker("ts", "examples/handlers/ts/handlers.ts", "dev-ts", ctx.address),
    };
  },
};

/** Python: workers/python's runtime in its virtualenv, made first when it is missing. */
const python: WorkerRuntime = {
  language: "Python",
  queue: "py",
  async detect(ctx) {
    const src = `${REPO_ROOT}workers/python/src`;
    const handlers = `${REPO_ROOT}examples/handlers/python/handlers.py`;
    if (!existsSync(join(src, "weft_worker")))
      return { available: false, reason: "no workers/python runtime" };
    if (!existsSync(handlers)) return { available: false, reason: "no examples/handlers/python/handlers.py" };
    const venv = await ensurePythonVenv({ venv: ctx.pythonVenv, env: ctx.env, say: ctx.say });
    if (venv.python === undefined) return { available: false, reason: venv.reason };
    return {
      available: true,
      launch: {
        command: venv.python,
        args: ["-m", "weft_worker", "--address", ctx.address, "--queue", "py", "--handlers", handlers],
        env: { PYTHONPATH: [src, ctx.env.PYTHONPATH].filter(Boolean).join(":"), PYTHONUNBUFFERED: "1" },
      },
    };
  },
};

/** Go: workers/go's runtime and an example worker program in examples/handlers/go, built first. */
const go: WorkerRuntime = {
  language: "Go",
  queue: "go",
  async detect(ctx) {
    const example = `${REPO_ROOT}examples/handlers/go`;
    if (!existsSync(`${REPO_ROOT}workers/go/go.mod`))
      return { available: false, reason: "no workers/go runtime" };
    if (!existsSync(join(example, "main.go")))
      return { available: false, reason: "no Go example worker yet" };
    const goBin = await which("go", ctx.env);
    if (goBin === undefined) return { available: false, reason: "go not found on PATH" };
    const binary = join(ctx.dataDir, "bin", "weft-go-examples");
    return {
      available: true,
      launch: {
        // Built once, then run directly: `go run` would leave the program behind on SIGTERM.
        prepare: async () => {
          await run(goBin, ["build", "-o", binary, "."], { cwd: example, env: ctx.env, timeout: 600_000 });
        },
        preparing:
          "building the Go example worker (go build in examples/handlers/go; the first build downloads and compiles its modules, a minute or two)",
        command: binary,
        args: ["--address", ctx.address, "--queue", "go"],
      },
    };
  },
};

/** Every runtime `weft dev` tries, in start order. */
export const WORKER_RUNTIMES: WorkerRuntime[] = [typescript, python, go];

/** The TypeScript stand-in for a queue whose own runtime is missing. */
export function fallbackWorker(queue: string, address: string): WorkerLaunch {
  return typescriptWorker(queue, "examples/handlers/ts/fallback.ts", `dev-${queue}-ts-fallback`, address);
}
