/** Messages between the bench and its worker child processes (IPC). */

/** Parent → child. */
export type ToChild =
  /** Count the next `n` completions from now on; answered with `armed`. */
  | { t: "expect"; n: number }
  /** Start polling (when the child was started with `deferStart`). */
  | { t: "start" }
  /** Engine child: run one run of `tasks` parallel no-op tasks; answered with `ran`. */
  | { t: "run"; tasks: number }
  /** Peer client: run one shape of the peer scenario; answered with `went`. */
  | { t: "go"; shape: PeerShape }
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
  /** Peer client: the shape took `ms`, from its first start call to the last result seen. */
  | { t: "went"; ms: number; latency?: { start: number[]; result: number[] } }
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

/** One shape of the peer scenario, as its client child runs it. */
export type PeerShape =
  /** `runs` chains started with batched calls of at most 1,000, then every result awaited. */
  | { kind: "chains-batched"; runs: number; round: string }
  /** `runs` chains, `lanes` at a time each starting one run and awaiting its result. */
  | { kind: "chains-each"; runs: number; lanes: number; round: string }
  /** One 1 → `width` → 1 run, awaited. */
  | { kind: "fan"; width: number; round: string }
  /** `samples` one-task runs one after the other: trigger → start and trigger → result seen, in ms. */
  | { kind: "latency"; samples: number; round: string };

/** Configuration of a peer worker child: Weft's worker on weftd, or a BullMQ Worker. */
export type PeerWorkerChildConfig =
  | { kind: "weft"; address: string; queue: string; concurrency: number }
  | { kind: "bullmq"; redisUrl: string; prefix: string; queue: string; concurrency: number };

/** Configuration of a peer client child: @weft/sdk's client, or BullMQ's FlowProducer and QueueEvents. */
export type PeerClientChildConfig =
  | {
      kind: "weft";
      address: string;
      queue: string;
      /** Options of createWeftClient (the SDK before issue 25: no shared stream, no trigger batching). */
      sdk: { sharedWatch?: boolean; batchTriggers?: boolean };
    }
  | { kind: "bullmq"; redisUrl: string; prefix: string; queue: string };
