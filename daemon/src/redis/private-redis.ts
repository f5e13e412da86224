import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { constants, readFileSync } from "node:fs";
import { access, mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
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
  /**
   * A configuration file given to redis-server before every flag (a Sentinel needs one it can rewrite).
   * @defaultValue none
   */
  configFile?: string;
  /**
   * More flags, after weftd's own (e.g. `["--cluster-enabled", "yes"]`, `["--sentinel"]`).
   * @defaultValue none
   */
  extraArgs?: string[];
  /**
   * The log line that says the server is ready (a Sentinel prints no "Ready to accept connections").
   * @defaultValue /Ready to accept connections/
   */
  readyLine?: RegExp;
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
  /** Kills it with SIGKILL (no shutdown, nothing flushed), as a crash would; `restart()` starts it again. */
  kill(): Promise<void>;
  /** Stops it and, when the directory was temporary, removes it. */
  close(): Promise<void>;
}

/** redis-server is not installed. */
export class RedisServerMissingError extends Error {
  override readonly name = "RedisServerMissingError";
}

const HOST = "127.0.0.1";
const STOP_TIMEOUT_MS = 5000;

/**
 * Finds a free TCP port on the loopback interface, below the kernel's ephemeral range when it can:
 * a port the kernel hands out (to an outgoing connection, or a listener on port 0) could be taken
 * by another process between this check and its caller's listen; one below that range only by a
 * caller that picks ports itself.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  for (let i = 0; low - PICK_FROM > 1000 && i < 50; i++) {
    const port = PICK_FROM + Math.floor(Math.random() * (low - PICK_FROM));
    // Never the same port twice in one process: callers that ask at once (a Cluster's nodes and
    // their bus ports) would otherwise each find it free and then race for it.
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (await canListen(port)) return port;
  }
  return listenOnce(0);
}

/** Ports {@link freePort} has answered or is checking in this process. */
const handedOut = new Set<number>();

/** The lowest port picked below the ephemeral range: well-known services sit below it. */
const PICK_FROM = 10_000;

/** The first port of the kernel's ephemeral range (Linux's default where it cannot be read). */
function ephemeralLow(): number {
  try {
    const low = Number.parseInt(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8"), 10);
    return Number.isInteger(low) ? low : 32_768;
  } catch {
    return 32_768;
  }
}

async function canListen(port: number): Promise<boolean> {
  try {
    await listenOnce(port);
    return true;
  } catch {
    return false;
  }
}

/** Listens on `port` (0: any), closes, and answers the port listened on. */
async function listenOnce(port: number): Promise<number> {
  const server = createServer();
  server.listen(port, HOST);
  // Rejects with the listen error (EADDRINUSE) when the port is taken.
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
  let child: RedisProcess | undefined;
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
    if (current !== undefined) await stopRedis(current);
  };
  return {
    port,
    url: `redis://${HOST}:${port}`,
    dir,
    get running() {
      return child !== undefined && child.watchdog.exitCode === null && child.watchdog.signalCode === null;
    },
    stop,
    async restart() {
      await stop();
      child = await spawnRedis(port, dir, options);
    },
    async kill() {
      const current = child;
      child = undefined;
      if (current === undefined) return;
      const exited = once(current.watchdog, "exit");
      if (current.watchdog.exitCode === null && current.watchdog.signalCode === null) {
        killHard(current);
        await exited;
      }
    },
    async close() {
      await stop();
      if (temporary) await rm(dir, { recursive: true, force: true });
    },
  };
}

function redisArgs(port: number, dir: string, options: RedisServerOptions): string[] {
  const args = options.configFile === undefined ? [] : [options.configFile];
  args.push("--port", String(port), "--bind", HOST, "--dir", dir, "--daemonize", "no", "--save", "");
  args.push("--logfile", "", "--protected-mode", "yes");
  if (options.persistence === "aof") args.push("--appendonly", "yes", "--appendfsync", "everysec");
  else args.push("--appendonly", "no");
  args.push(...(options.extraArgs ?? []));
  return args;
}

/**
 * Runs redis-server under a small sh watchdog that holds our end of a pipe on its stdin: when that
 * pipe closes — `stop()` closing it, or this process dying, even of SIGKILL — the watchdog stops
 * redis-server with SIGTERM (so the AOF is flushed) and exits with its status. A private Redis thus
 * never outlives weftd, and no orphan keeps writing to `.weft/redis` under the next weftd.
 */
const WATCHDOG = `
bin=$1; shift
exec 3<&0
"$bin" "$@" 3<&- &
pid=$!
echo "weft-watchdog: redis-server pid $pid"
(read _ <&3; kill -TERM "$pid" 2>/dev/null) &
watcher=$!
exec 3<&-
wait "$pid"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
`;

/** A running redis-server and its watchdog. */
interface RedisProcess {
  watchdog: ChildProcess;
  /** redis-server's own pid, for the SIGKILL of last resort. */
  pid: number | undefined;
}

async function spawnRedis(port: number, dir: string, options: RedisServerOptions): Promise<RedisProcess> {
  const binary = options.binary ?? "redis-server";
  if (!(await isExecutable(binary))) {
    throw new RedisServerMissingError(
      `${binary} not found: install the Debian/Ubuntu package redis-server (apt-get install redis-server), ` +
        "or give weftd a Redis with --redis-url / WEFT_REDIS_URL",
    );
  }
  const watchdog = spawn("sh", ["-c", WATCHDOG, "weft-redis", binary, ...redisArgs(port, dir, options)], {
    stdio: ["pipe", "pipe", "pipe"],
    detached: options.detached ?? false,
  });
  const proc: RedisProcess = { watchdog, pid: undefined };
  const output: string[] = [];
  const timeoutMs = options.startTimeoutMs ?? 10_000;
  return new Promise<RedisProcess>((resolvePromise, reject) => {
    let ready = false;
    let failed = false;
    const fail = (err: Error) => {
      if (ready || failed) return;
      failed = true;
      clearTimeout(timer);
      killHard(proc);
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
      for (const line of text.split("\n")) {
        const pid = /^weft-watchdog: redis-server pid (\d+)/.exec(line);
        if (pid !== null) proc.pid = Number(pid[1]);
        else if (line.trim() !== "") options.logger?.debug({ port }, line.trim());
      }
      if (ready) return;
      output.push(text);
      if ((options.readyLine ?? /Ready to accept connections/).test(output.join(""))) {
        ready = true;
        output.length = 0;
        clearTimeout(timer);
        resolvePromise(proc);
      }
    };
    watchdog.stdout.on("data", onData);
    watchdog.stderr.on("data", onData);
    // Writing to a pipe whose reader is gone must not throw in this process.
    watchdog.stdin.on("error", () => {});
    watchdog.on("error", fail);
    watchdog.once("exit", (code, signal) => {
      fail(new Error(`redis-server exited (${signal ?? code}) before it was ready:\n${output.join("")}`));
    });
  });
}

/** Whether `command` names an executable file, directly or through PATH. */
async function isExecutable(command: string): Promise<boolean> {
  const candidates = command.includes("/")
    ? [command]
    : (process.env.PATH ?? "")
        .split(delimiter)
        .filter((d) => d !== "")
        .map((d) => join(d, command));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return true;
    } catch {
      // Not in this directory: try the next one.
    }
  }
  return false;
}

function killHard(proc: RedisProcess): void {
  if (proc.pid !== undefined) {
    try {
      process.kill(proc.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  proc.watchdog.kill("SIGKILL");
}

async function stopRedis(proc: RedisProcess): Promise<void> {
  const { watchdog } = proc;
  if (watchdog.exitCode !== null || watchdog.signalCode !== null) return;
  const exited = once(watchdog, "exit");
  watchdog.stdin?.end();
  const timer = setTimeout(() => killHard(proc), STOP_TIMEOUT_MS);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}
