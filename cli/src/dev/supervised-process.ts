import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { createInterface } from "node:readline";

/** How a supervised process ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Options of {@link startSupervised}. */
export interface SupervisedOptions {
  /** Short name for messages, e.g. "weftd" or "worker ts". */
  name: string;
  /** Program and arguments. */
  command: string;
  args: string[];
  /** Working directory. */
  cwd: string;
  /** Environment. */
  env: NodeJS.ProcessEnv;
  /** File that receives stdout and stderr (appended). */
  logFile: string;
  /** Called with each line of output. */
  onLine?: (line: string) => void;
}

/** A child running in its own process group under a watchdog. */
export interface SupervisedProcess {
  readonly name: string;
  /** Pid of the watchdog, which is also the process group id. */
  readonly pgid: number;
  /** The program's own pid, once the watchdog reported it. */
  readonly pid: number | undefined;
  /** The exit, once it happened. */
  readonly exit: ExitInfo | undefined;
  /** Resolves when the process (and its watchdog) exited. */
  readonly exited: Promise<ExitInfo>;
  /** The last lines of output (at most 20), for error messages. */
  tail(): string[];
  /**
   * Resolves with the first line (from now on, or already seen) matching `predicate`; rejects when
   * the process exits first or after `timeoutMs`.
   */
  waitForLine(predicate: (line: string) => boolean, what: string, timeoutMs: number): Promise<string>;
  /**
   * SIGTERM to the whole group, then SIGKILL when it has not exited after `graceMs`. Resolves once
   * it exited.
   */
  stop(graceMs: number): Promise<ExitInfo>;
}

/**
 * A small sh watchdog, process-group leader, holding our end of a pipe on its stdin: when that pipe
 * closes because this process died (even of SIGKILL), it sends SIGTERM to its whole group, so no
 * child outlives `weft dev`. It ignores SIGTERM itself (the program gets it) and exits with the
 * program's status once the program exited, after reaping its helper: nothing is left behind.
 */
const WATCHDOG = `
trap ':' TERM INT
exec 3<&0
"$@" 3<&- </dev/null &
pid=$!
echo "weft-watchdog: pid $pid"
( trap - TERM INT; read _ <&3; kill -TERM 0 2>/dev/null ) &
watcher=$!
exec 3<&-
while :; do
  wait "$pid"
  status=$?
  kill -0 "$pid" 2>/dev/null || break
done
kill "$watcher" 2>/dev/null
wait "$watcher" 2>/dev/null
exit "$status"
`;

/** Starts `command` in a new process group under the watchdog, its output going to `logFile`. */
export function startSupervised(options: SupervisedOptions): SupervisedProcess {
  const log: WriteStream = createWriteStream(options.logFile, { flags: "a" });
  const child: ChildProcess = spawn(
    "sh",
    ["-c", WATCHDOG, "weft-watchdog", options.command, ...options.args],
    {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  let pid: number | undefined;
  let exit: ExitInfo | undefined;
  // Writing to the pipe of a watchdog that is gone must not throw here.
  child.stdin?.on("error", () => {});
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
    child.once("error", (err) => {
      log.write(`weft dev: could not start ${options.command}: ${err.message}\n`);
      exit = { code: 127, signal: null };
      resolve(exit);
    });
  });
  const lines: string[] = [];
  const listeners = new Set<(line: string) => void>();
  const onLine = (line: string) => {
    const reported = /^weft-watchdog: pid (\d+)$/.exec(line);
    if (reported !== null) {
      pid = Number(reported[1]);
      return;
    }
    log.write(`${line}\n`);
    lines.push(line);
    if (lines.length > 200) lines.splice(0, lines.length - 200);
    options.onLine?.(line);
    for (const listener of listeners) listener(line);
  };
  if (child.stdout !== null) createInterface({ input: child.stdout }).on("line", onLine);
  if (child.stderr !== null) createInterface({ input: child.stderr }).on("line", onLine);
  void exited.then(() => log.end());

  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, signal);
    } catch {
      // The group is already gone.
    }
  };
  return {
    name: options.name,
    pgid: child.pid ?? 0,
    get pid() {
      return pid;
    },
    get exit() {
      return exit;
    },
    exited,
    tail: () => lines.slice(-20),
    waitForLine(predicate, what, timeoutMs) {
      const seen = lines.find(predicate);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<string>((resolve, reject) => {
        const done = () => {
          listeners.delete(listener);
          clearTimeout(timer);
        };
        const listener = (line: string) => {
          if (!predicate(line)) return;
          done();
          resolve(line);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${options.name} did not ${what} within ${timeoutMs / 1000}s`));
        }, timeoutMs);
        listeners.add(listener);
        void exited.then((info) => {
          if (!listeners.has(listener)) return;
          done();
          reject(
            new Error(
              `${options.name} exited (${info.signal ?? `code ${info.code}`}) before it could ${what}`,
            ),
          );
        });
      });
    },
    async stop(graceMs: number) {
      if (exit !== undefined) return exit;
      signalGroup("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), graceMs);
      });
      const first = await Promise.race([exited, timedOut]);
      clearTimeout(timer);
      if (first !== "timeout") return first;
      signalGroup("SIGKILL");
      return exited;
    },
  };
}
