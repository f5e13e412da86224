import { hostname } from "node:os";
import type { Transport } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { TaskHandlers } from "./handler.js";
import { createDefaultLogger } from "./logger.js";
import { createWorkerTransport } from "./transport.js";

/** Options of a {@link Worker}. */
export interface WorkerOptions {
  /** Address of the daemon, `host:port` or a URL. Required unless `transport` is given. */
  address?: string;
  /** Task queue to poll. */
  queue: string;
  /** Handlers by name; the worker only receives tasks whose handler it lists. */
  handlers: TaskHandlers;
  /**
   * Most handlers run at once. One poll asks for as many tasks as there are free slots (at most 256
   * per poll); a slot frees when its handler returns, while its result is reported.
   * @defaultValue 10
   */
  concurrency?: number;
  /**
   * Take tasks and report outputs over one `Work` stream (true), or with `PollTask` and
   * `CompleteTasks` calls (false). Against a daemon without `Work` (an older weftd) the worker
   * polls either way.
   * @defaultValue true
   */
  stream?: boolean;
  /**
   * Identity shown on task runs.
   * @defaultValue `<hostname>:<pid>`
   */
  workerId?: string;
  /**
   * How long each PollTask waits for a task (the daemon caps it).
   * @defaultValue 20000
   */
  pollWaitMs?: number;
  /**
   * Interval of automatic heartbeats.
   * @defaultValue a third of the assignment's heartbeat timeout
   */
  heartbeatIntervalMs?: number;
  /**
   * How long `close()` lets in-flight tasks finish before aborting their signal and abandoning them.
   * @defaultValue 30000
   */
  shutdownGraceMs?: number;
  /**
   * Logger; the worker adds `queue` and `workerId`, each task `runId`, `taskId` and `attempt`.
   * @defaultValue pino JSON lines on stdout at `WEFT_LOG_LEVEL` or info
   */
  logger?: Logger;
  /** Bearer token for the daemon; ignored when `transport` is given. */
  token?: string;
  /**
   * Transport to the daemon.
   * @defaultValue `createWorkerTransport({ address, token })`: gRPC over HTTP/2
   */
  transport?: Transport;
  /**
   * First delay before retrying a call that failed; it doubles on each failure.
   * @defaultValue 100
   */
  retryInitialDelayMs?: number;
  /**
   * Longest delay between retries.
   * @defaultValue 5000
   */
  retryMaxDelayMs?: number;
  /**
   * How many times each task's result (its completion, or FailTask) is tried while the daemon is
   * unavailable.
   * @defaultValue 5
   */
  reportAttempts?: number;
}

/** {@link WorkerOptions} with every default applied. */
export interface ResolvedWorkerOptions {
  queue: string;
  handlers: TaskHandlers;
  concurrency: number;
  stream: boolean;
  workerId: string;
  pollWaitMs: number;
  /** Unset: derived from each assignment's heartbeat timeout. */
  heartbeatIntervalMs: number | undefined;
  shutdownGraceMs: number;
  logger: Logger;
  transport: Transport;
  retryInitialDelayMs: number;
  retryMaxDelayMs: number;
  reportAttempts: number;
}

/** Validates `options` and fills in the defaults, in one place. */
export function addDefaults(options: WorkerOptions): ResolvedWorkerOptions {
  if (options.queue === "") {
    throw new TypeError("WorkerOptions.queue must not be empty");
  }
  if (Object.keys(options.handlers).length === 0) {
    throw new TypeError("WorkerOptions.handlers must name at least one handler");
  }
  let transport = options.transport;
  if (transport === undefined) {
    if (options.address === undefined || options.address === "") {
      throw new TypeError("WorkerOptions.address is required when no transport is given");
    }
    transport = createWorkerTransport({
      address: options.address,
      ...(options.token === undefined ? {} : { token: options.token }),
    });
  }
  const resolved: ResolvedWorkerOptions = {
    queue: options.queue,
    handlers: options.handlers,
    concurrency: options.concurrency ?? 10,
    stream: options.stream ?? true,
    workerId: options.workerId ?? `${hostname()}:${process.pid}`,
    pollWaitMs: options.pollWaitMs ?? 20_000,
    heartbeatIntervalMs: options.heartbeatIntervalMs,
    shutdownGraceMs: options.shutdownGraceMs ?? 30_000,
    logger: options.logger ?? createDefaultLogger(),
    transport,
    retryInitialDelayMs: options.retryInitialDelayMs ?? 100,
    retryMaxDelayMs: options.retryMaxDelayMs ?? 5_000,
    reportAttempts: options.reportAttempts ?? 5,
  };
  requirePositiveInteger("concurrency", resolved.concurrency);
  requirePositiveInteger("reportAttempts", resolved.reportAttempts);
  for (const name of ["pollWaitMs", "shutdownGraceMs", "retryInitialDelayMs", "retryMaxDelayMs"] as const) {
    requireNonNegative(name, resolved[name]);
  }
  if (resolved.heartbeatIntervalMs !== undefined && !(resolved.heartbeatIntervalMs > 0)) {
    throw new TypeError(
      `WorkerOptions.heartbeatIntervalMs must be positive, got ${resolved.heartbeatIntervalMs}`,
    );
  }
  return resolved;
}

function requirePositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new TypeError(`WorkerOptions.${name} must be a positive integer, got ${value}`);
  }
}

function requireNonNegative(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) {
    throw new TypeError(`WorkerOptions.${name} must be a non-negative number, got ${value}`);
  }
}
