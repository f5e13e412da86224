import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { promisify } from "node:util";
import { freePort } from "@weft/daemon";
import { REPO_ROOT } from "./paths.js";

/**
 * Runs `pnpm build` (@weft/sdk, then @weft/daemon, into their dist/ folders), so that the bench measures
 * what `pnpm start` and the container image run: no TypeScript loader in the process.
 */
export async function buildWeftd(): Promise<void> {
  await promisify(execFile)("pnpm", ["build"], { cwd: REPO_ROOT, timeout: 120_000 });
}

/** How to start one weftd. */
export interface WeftdOptions {
  redisUrl: string;
  prefix: string;
  /** More weftd flags. */
  args?: string[];
  /** Node flags put before the script, e.g. `--cpu-prof`. */
  nodeFlags?: string[];
}

/** A weftd process, listening. */
export interface Weftd {
  readonly pid: number;
  /** "127.0.0.1:<port>". */
  readonly address: string;
  /** Everything it wrote, for error messages. */
  output(): string;
  /** Its /metrics samples, by name with labels (`weft_jobs_fetched_total{via="poll"}`). */
  metrics(): Promise<Map<string, number>>;
  /** SIGTERM and wait for the exit (SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/**
 * Spawns `node [nodeFlags] --conditions=weft-dist daemon/dist/main.js --log-level warn …` (built by
 * {@link buildWeftd}) on free loopback ports and resolves once /healthz answers. The port is chosen here,
 * since at warn level weftd does not log it.
 */
export async function startWeftd(options: WeftdOptions): Promise<Weftd> {
  const port = await freePort();
  const metricsPort = await freePort();
  const args = [
    ...(options.nodeFlags ?? []),
    "--conditions=weft-dist",
    `${REPO_ROOT}daemon/dist/main.js`,
    "--addr",
    `127.0.0.1:${port}`,
    "--metrics-addr",
    `127.0.0.1:${metricsPort}`,
    "--redis-url",
    options.redisUrl,
    "--prefix",
    options.prefix,
    "--log-level",
    "warn",
    ...(options.args ?? []),
  ];
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("WEFT_") && name !== "REDIS_URL"),
  );
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = once(child, "exit").then(() => live.delete(child));

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`weftd exited at start:\n${output}`);
    try {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/healthz`, {
        signal: AbortSignal.timeout(1000),
      });
      if (res.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`weftd did not become healthy within 30 s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    pid: child.pid as number,
    address: `127.0.0.1:${port}`,
    output: () => output,
    async metrics() {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const samples = new Map<string, number>();
      for (const line of text.split("\n")) {
        const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
        if (m !== null) samples.set(m[1] as string, Number(m[2]));
      }
      return samples;
    },
    async stop(timeoutMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
