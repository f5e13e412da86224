/** Messages between the bench and its worker child processes (IPC). */

/** Parent → child. */
export type ToChild =
  /** Count the next `n` completions from now on; answered with `armed`. */
  | { t: "expect"; n: number }
  /** Start polling (when the child was started with `deferStart`). */
  | { t: "start" }
  /** Engine child: run one run of `tasks` parallel no-op tasks; answered with `ran`. */
  | { t: "run"; tasks: number }
  /** Close the worker(s) and exit. */
  | { t: "stop" };

/** Child → parent. */
export type FromChild =
  /** The worker polls (or the BullMQ worker runs). */
  | { t: "ready" }
  | { t: "armed" }
  /** The `n` expected completions happened; wall-clock ms of the first and the last. */
  | { t: "done"; first: number; last: number }
  /** Engine child: the run took `ms`, from its Trigger to its last completion recorded. */
  | { t: "ran"; ms: number }
  | { t: "error"; message: string };

/** Configuration of the Weft worker child, passed as JSON in BENCH_CHILD. */
export interface WeftWorkerChildConfig {
  /** One Worker per address, the concurrency split evenly between them. */
  addresses: string[];
  queue: string;
  concurrency: number;
  /** How long the handler sleeps; 0: returns at once. */
  sleepMs: number;
  /** Wait for a `start` message before polling. */
  deferStart: boolean;
}

/** Configuration of the raw BullMQ worker child. */
export interface BullmqWorkerChildConfig {
  redisUrl: string;
  queue: string;
  prefix: string;
  concurrency: number;
}

/** Configuration of the engine child (Weft's engine with in-process slots). */
export interface EngineAloneChildConfig {
  redisUrl: string;
  /** Key prefix of its engine, apart from weftd's. */
  prefix: string;
  concurrency: number;
  /** Most tasks of one workflow. */
  maxTasks: number;
}
