import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Logger } from "pino";

/** Options of {@link startRedisServer}. */
export interface RedisServerOptions {
  /**
   * Data directory (created if missing).
   * @defaultValue a new temporary directory, removed by `close()`
   */
  dir?: string;
  /**
   * Port to listen on.
   * @defaultValue a free port
   */
  port?: number;
  /**
   * `aof` keeps data across restarts (append-only file, fsync every second); `none` keeps it in memory only.
   * @defaultValue "none"
   */
  persistence?: "aof" | "none";
  /**
   * Put redis-server in its own process group, so that a Ctrl-C meant for the parent does not
   * stop it before the parent is done with it.
   * @defaultValue false
   */
  detached?: boolean;
  /**
   * The redis-server binary.
   * @defaultValue "redis-server" from PATH
   */
  binary?: string;
  /**
   * How long to wait for "Ready to accept connections".
   * @defaultValue 10000
   */
  startTimeoutMs?: number;
  /** Receives redis-server's own log lines at debug level. */
  logger?: Logger;
}

/** A redis-server child process on a loopback port. */
export interface RedisServer {
  /** Its port; `restart()` keeps it. */
  readonly port: number;
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** Its data directory. */
  readonly dir: string;
  /** Whether the process is running. */
  readonly running: boolean;
  /** Stops it (SIGTERM, then SIGKILL after 5 s); data is kept for `restart()`. */
  stop(): Promise<void>;
  /** Starts it again on the same port and directory (stopping it first if needed). */
  restart(): Promise<void>;
  /** Stops it and, when the directory was temporary, removes it. */
  close(): Promise<void>;
}

/** redis-server is not installed. */
export class RedisServerMissingError extends Error {
  override readonly name = "RedisServerMissingError";
}

const HOST = "127.0.0.1";
const STOP_TIMEOUT_MS = 5000;

/** Finds a free TCP port on the loopback interface. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, HOST);
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") throw new Error("could not get a free port");
  return address.port;
}

/**
 * Starts `redis-server` bound to 127.0.0.1 on a free (or the given) port and waits until it accepts
 * connections. Throws {@link RedisServerMissingError} naming the Debian package when it is not installed.
 */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const temporary = options.dir === undefined;
  const dir = options.dir === undefined ? await mkdtemp(join(tmpdir(), "weft-redis-")) : resolve(options.dir);
  await mkdir(dir, { recursive: true });
  let port = options.port ?? (await freePort());
  let child: ChildProcess | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      child = await spawnRedis(port, dir, options);
      break;
    } catch (err) {
      // Someone took the free port between our probe and redis-server's bind: pick another.
      if (options.port !== undefined || attempt >= 3 || !/already in use/i.test((err as Error).message)) {
        if (temporary) await rm(dir, { recursive: true, force: true });
        throw err;
      }
      port = await freePort();
    }
  }

  const stop = async () => {
    const current = child;
    child = undefined;
    if (current !== undefined) await stopChild(current);
  };
  return {
    port,
    url: `redis://${HOST}:${port}`,
    dir,
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    stop,
    async restart() {
      await stop();
      child = await spawnRedis(port, dir, options);
    },
    async close() {
      await stop();
      if (temporary) await rm(dir, { recursive: true, force: true });
    },
  };
}

function redisArgs(port: number, dir: string, persistence: "aof" | "none"): string[] {
  const args = ["--port", String(port), "--bind", HOST, "--dir", dir, "--daemonize", "no", "--save", ""];
  args.push("--logfile", "", "--protected-mode", "yes");
  if (persistence === "aof") args.push("--appendonly", "yes", "--appendfsync", "everysec");
  else args.push("--appendonly", "no");
  return args;
}

async function spawnRedis(port: number, dir: string, options: RedisServerOptions): Promise<ChildProcess> {
  const binary = options.binary ?? "redis-server";
  const child = spawn(binary, redisArgs(port, dir, options.persistence ?? "none"), {
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false,
  });
  const output: string[] = [];
  const timeoutMs = options.startTimeoutMs ?? 10_000;
  return new Promise<ChildProcess>((resolvePromise, reject) => {
    let ready = false;
    let failed = false;
    const fail = (err: Error) => {
      if (ready || failed) return;
      failed = true;
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(err);
    };
    const timer = setTimeout(
      () =>
        fail(
          new Error(`redis-server did not start within ${timeoutMs}ms on port ${port}:\n${output.join("")}`),
        ),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      const text = chunk.toString();
      for (const line of text.split("\n"))
        if (line.trim() !== "") options.logger?.debug({ port }, line.trim());
      if (ready) return;
      output.push(text);
      if (output.join("").includes("Ready to accept connections")) {
        ready = true;
        output.length = 0;
        clearTimeout(timer);
        resolvePromise(child);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") {
        fail(
          new RedisServerMissingError(
            `${binary} not found: install the Debian/Ubuntu package redis-server (apt-get install redis-server), ` +
              "or give weftd a Redis with --redis-url / WEFT_REDIS_URL",
          ),
        );
      } else {
        fail(err);
      }
    });
    child.once("exit", (code, signal) => {
      fail(new Error(`redis-server exited (${signal ?? code}) before it was ready:\n${output.join("")}`));
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}
