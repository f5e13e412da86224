import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { createWeftClient, loadWorkflowFile } from "@weft/sdk";
import type { Io } from "../io.js";
import { freePort } from "./free-port.js";
import { nodeTs, REPO_ROOT } from "./paths.js";
import { type SupervisedProcess, startSupervised } from "./supervised-process.js";
import { which } from "./which.js";
import { fallbackWorker, WORKER_RUNTIMES, type WorkerLaunch } from "./worker-runtimes.js";

/** Options of {@link DevSession}. */
export interface DevOptions {
  /** weftd's API address. */
  addr: string;
  /** weftd's /metrics and /healthz address. */
  metricsAddr: string;
  /** An existing Redis; unset: start a private redis-server. */
  redisUrl: string | undefined;
  /** Folder for Redis data, logs and build outputs. */
  dataDir: string;
  /** Submit the example workflows. */
  examples: boolean;
  /** Start the example workers. */
  workers: boolean;
  /** weftd's configuration file (`--config`), if any. */
  config: string | undefined;
  /** The Python worker's virtualenv (made when missing). */
  pythonVenv: string;
  env: NodeJS.ProcessEnv;
}

/** Raised for a problem the user can fix, printed as it is. */
export class DevError extends Error {
  override readonly name = "DevError";
}

/** What one worker serves, for the summary. */
interface WorkerNote {
  queue: string;
  text: string;
}

/** The state file: lets a second `weft dev` refuse to start, and tests find every process. */
export interface DevStateFile {
  pid: number;
  address: string;
  processes: { name: string; pgid: number; pid: number | undefined }[];
}

const STOP_GRACE_MS = { worker: 10_000, weftd: 15_000, redis: 10_000 };

/**
 * Everything `weft dev` runs: a private redis-server, weftd and the example workers, each in its
 * own process group under a watchdog. `stop()` stops them in reverse order and waits for each.
 */
export class DevSession {
  readonly #workers: SupervisedProcess[] = [];
  #weftd: SupervisedProcess | undefined;
  #redis: SupervisedProcess | undefined;
  #redisUrl = "";
  readonly #notes: WorkerNote[] = [];
  readonly #workflows: string[] = [];
  readonly #logDir: string;
  readonly #stateFile: string;

  constructor(
    private readonly options: DevOptions,
    private readonly io: Io,
  ) {
    this.#logDir = join(options.dataDir, "logs");
    this.#stateFile = join(options.dataDir, "dev.json");
  }

  /** Starts everything; on failure stops what it started and throws. */
  async start(signal: AbortSignal): Promise<void> {
    this.refuseIfRunning();
    await mkdir(this.#logDir, { recursive: true });
    await this.startRedis();
    signal.throwIfAborted();
    await this.startWeftd();
    signal.throwIfAborted();
    if (this.options.examples) await this.submitExamples();
    if (this.options.workers) {
      for (const runtime of WORKER_RUNTIMES) {
        signal.throwIfAborted();
        await this.startRuntime(runtime);
      }
    }
    await this.writeState();
  }

  /** Resolves with a message when weftd or redis-server exits on its own. */
  async crashed(): Promise<string> {
    const core = [this.#weftd, this.#redis].filter((p): p is SupervisedProcess => p !== undefined);
    return Promise.race(
      core.map(async (p) => {
        const exit = await p.exited;
        return `${p.name} exited on its own (${exit.signal ?? `code ${exit.code}`}):\n  ${p.tail().join("\n  ")}`;
      }),
    );
  }

  /** Stops the workers, then weftd, then redis-server, each with a bounded grace period. */
  async stop(): Promise<void> {
    if (this.#workers.length > 0) {
      this.io.out("stopping workers…\n");
      await Promise.all(this.#workers.map((w) => w.stop(STOP_GRACE_MS.worker)));
    }
    if (this.#weftd !== undefined) {
      this.io.out("stopping weftd…\n");
      await this.#weftd.stop(STOP_GRACE_MS.weftd);
    }
    if (this.#redis !== undefined) {
      this.io.out("stopping redis-server…\n");
      await this.#redis.stop(STOP_GRACE_MS.redis);
    }
    await rm(this.#stateFile, { force: true });
  }

  /** The banner with addresses and what to run next. */
  summary(): string {
    const o = this.options;
    const address = o.addr === "127.0.0.1:7233" ? "" : ` --address ${o.addr}`;
    const rel = relative(process.cwd(), o.dataDir);
    const dir = rel === "" ? "." : rel.startsWith("..") ? o.dataDir : rel;
    const lines = [
      "",
      "weft dev is running:",
      `  weftd      ${o.addr} (gRPC, gRPC-Web, Connect) · metrics http://${o.metricsAddr}/metrics`,
      `  redis      ${this.#redisUrl}${o.redisUrl === undefined ? ` (data in ${join(dir, "redis")})` : ""}`,
    ];
    if (o.config !== undefined) {
      const config = relative(process.cwd(), o.config);
      lines.push(`  config     ${config.startsWith("..") ? o.config : config}`);
    }
    for (const n of this.#notes) lines.push(`  worker     queue ${n.queue.padEnd(3)} ${n.text}`);
    if (this.#workflows.length > 0) lines.push(`  workflows  ${this.#workflows.join(", ")}`);
    lines.push(`  logs       ${join(dir, "logs")}/`, "", "Next, in another terminal:");
    lines.push(`  pnpm weft trigger etl${address} --input '{"date": "2024-05-01", "orders": 12}' --watch`);
    lines.push(`  pnpm weft trigger fan-out${address} --input '{"text": "to be or not to be"}' --watch`);
    lines.push(`  pnpm weft runs ls${address}`);
    lines.push(`  WEFT_ADDRESS=${o.addr} node --import tsx/esm examples/sdk/etl.ts`);
    lines.push("", "Press Ctrl-C to stop everything.", "");
    return lines.join("\n");
  }

  private refuseIfRunning(): void {
    if (!existsSync(this.#stateFile)) return;
    try {
      const state = JSON.parse(readFileSync(this.#stateFile, "utf8")) as DevStateFile;
      process.kill(state.pid, 0);
      throw new DevError(
        `weft dev is already running (pid ${state.pid}, weftd on ${state.address}) with its data in ${this.options.dataDir}`,
      );
    } catch (err) {
      if (err instanceof DevError) throw err;
      // A stale file from a session that died: carry on.
    }
  }

  private async writeState(): Promise<void> {
    const all = [this.#redis, this.#weftd, ...this.#workers].filter(
      (p): p is SupervisedProcess => p !== undefined,
    );
    const state: DevStateFile = {
      pid: process.pid,
      address: this.options.addr,
      processes: all.map((p) => ({ name: p.name, pgid: p.pgid, pid: p.pid })),
    };
    await writeFile(this.#stateFile, `${JSON.stringify(state, null, 2)}\n`);
  }

  private log(name: string): string {
    return join(this.#logDir, `${name.replace(/\s+/g, "-")}.log`);
  }

  private async startRedis(): Promise<void> {
    if (this.options.redisUrl !== undefined) {
      this.#redisUrl = this.options.redisUrl;
      return;
    }
    const binary = await which("redis-server", this.options.env);
    if (binary === undefined) {
      throw new DevError(
        "redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install redis-server) " +
          "or give weft dev a Redis with --redis-url redis://host:6379",
      );
    }
    const dir = resolve(this.options.dataDir, "redis");
    await mkdir(dir, { recursive: true });
    const port = await freePort();
    this.io.out(`starting redis-server on 127.0.0.1:${port} (data in ${dir})…\n`);
    const redis = startSupervised({
      name: "redis-server",
      command: binary,
      args: [
        ...["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--daemonize", "no", "--save", ""],
        ...["--appendonly", "yes", "--appendfsync", "everysec", "--logfile", "", "--protected-mode", "yes"],
      ],
      cwd: dir,
      env: this.options.env,
      logFile: this.log("redis-server"),
    });
    this.#redis = redis;
    await redis.waitForLine((l) => l.includes("Ready to accept connections"), "accept connections", 15_000);
    this.#redisUrl = `redis://127.0.0.1:${port}`;
  }

  private async startWeftd(): Promise<void> {
    this.io.out(`starting weftd on ${this.options.addr}…\n`);
    const [command, args] = nodeTs("daemon/src/main.ts", [
      ...["--addr", this.options.addr, "--metrics-addr", this.options.metricsAddr],
      ...["--redis-url", this.#redisUrl],
      ...(this.options.config === undefined ? [] : ["--config", this.options.config]),
    ]);
    const weftd = startSupervised({
      name: "weftd",
      command,
      args,
      cwd: REPO_ROOT,
      // A development daemon on loopback: no tokens to set up (WEFT_INSECURE, so that a weftd
      // without authentication support ignores it).
      env: {
        ...this.options.env,
        WEFT_LOG_LEVEL: this.options.env.WEFT_LOG_LEVEL ?? "info",
        WEFT_INSECURE: this.options.env.WEFT_INSECURE ?? "true",
      },
      logFile: this.log("weftd"),
    });
    this.#weftd = weftd;
    try {
      await weftd.waitForLine((l) => l.includes('"msg":"weftd listening"'), "listen", 60_000);
    } catch (err) {
      throw new DevError(`${(err as Error).message}:\n  ${weftd.tail().join("\n  ")}`);
    }
  }

  private async submitExamples(): Promise<void> {
    const dir = `${REPO_ROOT}examples`;
    const files = readdirSync(dir).filter((f) => /\.ya?ml$|\.json$/.test(f) && f !== "package.json");
    const client = createWeftClient({ address: this.options.addr });
    try {
      for (const file of files.sort()) {
        const res = await client.submitWorkflow(await loadWorkflowFile(join(dir, file)));
        this.#workflows.push(`${res.workflow.name} v${res.workflow.version}`);
      }
    } finally {
      client.close();
    }
  }

  private async startRuntime(runtime: (typeof WORKER_RUNTIMES)[number]): Promise<void> {
    const address = this.options.addr;
    const found = await runtime.detect({
      address,
      dataDir: this.options.dataDir,
      pythonVenv: this.options.pythonVenv,
      env: this.options.env,
      say: (text) => this.io.out(text),
    });
    if (found.available) {
      const started = await this.startWorker(`worker ${runtime.queue}`, found.launch);
      if (started === undefined) {
        this.#notes.push({ queue: runtime.queue, text: runtime.language });
        return;
      }
      this.io.err(`weft dev: the ${runtime.language} worker did not start: ${started}\n`);
    }
    const why = found.available ? `the ${runtime.language} worker failed` : found.reason;
    const failed = await this.startWorker(
      `worker ${runtime.queue} fallback`,
      fallbackWorker(runtime.queue, address),
    );
    if (failed !== undefined)
      throw new DevError(`the TypeScript fallback for queue ${runtime.queue} did not start: ${failed}`);
    this.#notes.push({ queue: runtime.queue, text: `TypeScript fallback for ${runtime.language} (${why})` });
  }

  /**
   * Runs a launch's first step (a build), saying what it does and, every 15 s, that it still does
   * it: a first Go build downloads and compiles modules for a minute or two.
   */
  private async prepare(launch: WorkerLaunch): Promise<void> {
    if (launch.prepare === undefined) return;
    const started = Date.now();
    const seconds = () => Math.round((Date.now() - started) / 1000);
    if (launch.preparing !== undefined) this.io.out(`  ${launch.preparing}…\n`);
    const ticker = setInterval(() => this.io.out(`  still at it (${seconds()} s)…\n`), 15_000);
    try {
      await launch.prepare();
    } finally {
      clearInterval(ticker);
    }
    if (launch.preparing !== undefined) this.io.out(`  done in ${seconds()} s\n`);
  }

  /** Starts a worker and waits until it polls; resolves with the reason when it did not start. */
  private async startWorker(name: string, launch: WorkerLaunch): Promise<string | undefined> {
    this.io.out(`starting ${name}…\n`);
    try {
      await this.prepare(launch);
    } catch (err) {
      return (err as Error).message.split("\n")[0];
    }
    const worker = startSupervised({
      name,
      command: launch.command,
      args: launch.args,
      cwd: REPO_ROOT,
      env: { ...this.options.env, WEFT_LOG_LEVEL: this.options.env.WEFT_LOG_LEVEL ?? "info", ...launch.env },
      logFile: this.log(name),
    });
    this.#workers.push(worker);
    try {
      await worker.waitForLine((l) => /worker polling/i.test(l), "start polling", 60_000);
      return undefined;
    } catch (err) {
      await worker.stop(STOP_GRACE_MS.worker);
      this.#workers.splice(this.#workers.indexOf(worker), 1);
      return `${(err as Error).message}${worker.tail().length > 0 ? `: ${worker.tail().slice(-3).join(" | ")}` : ""}`;
    }
  }
}
