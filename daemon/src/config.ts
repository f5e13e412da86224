import { parseArgs } from "node:util";
import { ANSWER_OVERHEAD_BYTES, DEFAULT_MAX_RESPONSE_BYTES } from "./engine/shared/index.js";
import { parseRedisTarget } from "./redis/redis-target.js";

export { redactRedisUrl } from "./redis/redis-target.js";

/** Everything weftd can be configured with; every field has a flag and a `WEFT_*` variable. */
export interface DaemonConfig {
  /**
   * host:port of the API port (gRPC, gRPC-Web and Connect; HTTP/2 cleartext and HTTP/1.1). Port 0 picks a free port.
   * @defaultValue "127.0.0.1:7233"
   */
  addr: string;
  /**
   * host:port of the plain HTTP port serving `/metrics` (Prometheus) and `/healthz`. Port 0 picks a free port.
   * @defaultValue "127.0.0.1:9233"
   */
  metricsAddr: string;
  /**
   * Redis to use: one server (`redis://:password@host:6379/0`), a Redis Cluster
   * (`redis+cluster://host:7000,host:7001`), or a primary found through Sentinels
   * (`redis+sentinel://host:26379,host:26380/mymaster`); `rediss…` for TLS. When unset, weftd
   * starts a private `redis-server` on a free loopback port with its data under `.weft/redis`.
   * @defaultValue undefined
   */
  redisUrl: string | undefined;
  /**
   * Prefix of every Redis key, so that several Weft installations can share one Redis.
   * @defaultValue "weft"
   */
  prefix: string;
  /**
   * pino log level: fatal, error, warn, info, debug, trace or silent.
   * @defaultValue "info"
   */
  logLevel: LogLevel;
  /**
   * Largest request message accepted (after decompression); larger ones get RESOURCE_EXHAUSTED.
   * @defaultValue 4 MiB
   */
  maxRequestBytes: number;
  /**
   * How long in-flight unary calls may take to finish after SIGTERM before they are cut off.
   * @defaultValue 10 s
   */
  shutdownGraceMs: number;
  /**
   * Longest wait a PollTask call may ask for; longer waits are shortened to this.
   * @defaultValue 30 s
   */
  pollWaitCapMs: number;
  /**
   * Most tasks one workflow definition may hold.
   * @defaultValue 10000
   */
  maxTasksPerWorkflow: number;
  /**
   * Largest JSON payload (run input, task input or output) accepted.
   * @defaultValue 1 MiB
   */
  maxPayloadBytes: number;
  /**
   * Largest answer or assignment message weftd builds (the default receive limit of gRPC clients).
   * What would not fit is left out and marked, paged, or stays queued; it must hold two payloads
   * (a task's output and its error) plus 64 KiB.
   * @defaultValue 4 MiB
   */
  maxResponseBytes: number;
  /**
   * How long a finished run's state and events are kept in Redis.
   * @defaultValue 7 days
   */
  runRetentionMs: number;
  /**
   * Heartbeat timeout of a lease when the task does not set one.
   * @defaultValue 30 s
   */
  defaultHeartbeatTimeoutMs: number;
  /**
   * How often expired leases and stalled tasks are looked for.
   * @defaultValue 5 s
   */
  stalledIntervalMs: number;
  /**
   * A client connection quiet for this long gets an HTTP/2 PING (see `keepaliveTimeoutMs`).
   * @defaultValue 10 s
   */
  keepaliveIntervalMs: number;
  /**
   * A client connection that leaves a PING unanswered this long is closed, ending its calls: a
   * worker cut off or frozen is noticed within interval + timeout. (It gets no task meanwhile:
   * a task goes to a poll on a connection quiet for over a second only after a PING answered.)
   * @defaultValue 20 s
   */
  keepaliveTimeoutMs: number;
  /**
   * Most concurrent WatchRun streams one replica serves; more get RESOURCE_EXHAUSTED.
   * @defaultValue 10000
   */
  maxWatchersPerReplica: number;
  /**
   * Most task queues one replica serves polls for at once (each holds one Redis connection while it
   * is open); a poll of one more gets RESOURCE_EXHAUSTED. A queue no poll used for two minutes closes.
   * @defaultValue 1000
   */
  maxOpenQueues: number;
  /**
   * YAML or JSON file with the policy settings: default retry policy, per-queue limits, rate-limit
   * keys (see daemon/src/policy.ts). Unset: none.
   * @defaultValue undefined
   */
  configFile: string | undefined;
  /**
   * How long a run must stay untouched before the reconciler checks it for a step a crash cut short.
   * @defaultValue 10000
   */
  reconcileAfterMs: number;
  /**
   * Serve without authentication (local development only): weftd logs a warning at startup.
   * Without it, weftd refuses to start unless the configuration file lists tokens.
   * @defaultValue false
   */
  insecure: boolean;
  /**
   * PEM certificate of the API port; with `tlsKey`, the port serves TLS only (reloaded on SIGHUP).
   * @defaultValue undefined
   */
  tlsCert: string | undefined;
  /**
   * PEM private key of the API port.
   * @defaultValue undefined
   */
  tlsKey: string | undefined;
  /**
   * PEM CA bundle: when set, clients must present a certificate it signed (mTLS).
   * @defaultValue undefined
   */
  tlsClientCa: string | undefined;
  /**
   * Most server streams (WatchRun) one token keeps open at once (with authentication on).
   * @defaultValue 100
   */
  maxStreamsPerClient: number;
  /**
   * Most runs one WatchRuns stream follows at once; one more is refused (a RESOURCE_EXHAUSTED
   * rejection on the stream).
   * @defaultValue 10000
   */
  maxRunsPerWatch: number;
  /**
   * Most events a WatchRuns stream holds for a client that reads slower than its runs move (and at
   * most 4 × --max-response-bytes of them); past it the stream ends with RESOURCE_EXHAUSTED.
   * @defaultValue 10000
   */
  maxWatchBuffer: number;
}

/** pino's level names. */
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

const LOG_LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** The defaults of every optional field, applied only by {@link addDefaults}. */
export const DEFAULT_CONFIG: Readonly<DaemonConfig> = {
  addr: "127.0.0.1:7233",
  metricsAddr: "127.0.0.1:9233",
  redisUrl: undefined,
  prefix: "weft",
  logLevel: "info",
  maxRequestBytes: 4 * 1024 * 1024,
  shutdownGraceMs: 10_000,
  pollWaitCapMs: 30_000,
  maxTasksPerWorkflow: 10_000,
  maxPayloadBytes: 1024 * 1024,
  maxResponseBytes: DEFAULT_MAX_RESPONSE_BYTES,
  runRetentionMs: 7 * 24 * 60 * 60 * 1000,
  defaultHeartbeatTimeoutMs: 30_000,
  stalledIntervalMs: 5_000,
  keepaliveIntervalMs: 10_000,
  keepaliveTimeoutMs: 20_000,
  maxWatchersPerReplica: 10_000,
  maxOpenQueues: 1000,
  configFile: undefined,
  reconcileAfterMs: 10_000,
  insecure: false,
  tlsCert: undefined,
  tlsKey: undefined,
  tlsClientCa: undefined,
  maxStreamsPerClient: 100,
  maxRunsPerWatch: 10_000,
  maxWatchBuffer: 10_000,
};

/** Fills the unset fields of `partial` with {@link DEFAULT_CONFIG} and validates the result. */
export function addDefaults(partial: Partial<DaemonConfig> = {}): DaemonConfig {
  const config: DaemonConfig = { ...DEFAULT_CONFIG };
  for (const [key, value] of Object.entries(partial) as [keyof DaemonConfig, unknown][]) {
    if (value !== undefined) (config as unknown as Record<string, unknown>)[key] = value;
  }
  validateConfig(config);
  return config;
}

/** A configuration mistake; main.ts prints its message and exits with code 2. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

type Kind = "string" | "addr" | "url" | "level" | "count" | "bytes" | "duration" | "boolean";

interface OptionSpec {
  key: keyof DaemonConfig;
  flag: string;
  env: string[];
  kind: Kind;
  help: string;
}

const OPTIONS: readonly OptionSpec[] = [
  {
    key: "addr",
    flag: "addr",
    env: ["WEFT_ADDR"],
    kind: "addr",
    help: "API address (host:port, port 0 = any)",
  },
  {
    key: "metricsAddr",
    flag: "metrics-addr",
    env: ["WEFT_METRICS_ADDR"],
    kind: "addr",
    help: "/metrics and /healthz address",
  },
  {
    key: "redisUrl",
    flag: "redis-url",
    env: ["WEFT_REDIS_URL", "REDIS_URL"],
    kind: "url",
    help:
      "Redis URL: redis://host:port (one server), redis+cluster://host:port,host:port (Redis Cluster), " +
      "redis+sentinel://host:port,host:port/<master name> (Sentinel); rediss… for TLS; " +
      "unset = start a private redis-server (data in .weft/redis)",
  },
  { key: "prefix", flag: "prefix", env: ["WEFT_PREFIX"], kind: "string", help: "prefix of every Redis key" },
  { key: "logLevel", flag: "log-level", env: ["WEFT_LOG_LEVEL"], kind: "level", help: LOG_LEVELS.join("|") },
  {
    key: "maxRequestBytes",
    flag: "max-request-bytes",
    env: ["WEFT_MAX_REQUEST_BYTES"],
    kind: "bytes",
    help: "largest request message, after decompression",
  },
  {
    key: "shutdownGraceMs",
    flag: "shutdown-grace",
    env: ["WEFT_SHUTDOWN_GRACE"],
    kind: "duration",
    help: "time in-flight calls get to finish on SIGTERM",
  },
  {
    key: "pollWaitCapMs",
    flag: "poll-wait-cap",
    env: ["WEFT_POLL_WAIT_CAP"],
    kind: "duration",
    help: "longest PollTask wait",
  },
  {
    key: "maxTasksPerWorkflow",
    flag: "max-tasks-per-workflow",
    env: ["WEFT_MAX_TASKS_PER_WORKFLOW"],
    kind: "count",
    help: "most tasks in one workflow",
  },
  {
    key: "maxPayloadBytes",
    flag: "max-payload-bytes",
    env: ["WEFT_MAX_PAYLOAD_BYTES"],
    kind: "bytes",
    help: "largest run/task input or output",
  },
  {
    key: "maxResponseBytes",
    flag: "max-response-bytes",
    env: ["WEFT_MAX_RESPONSE_BYTES"],
    kind: "bytes",
    help: "largest answer or assignment message; at least 2 x --max-payload-bytes + 64KiB",
  },
  {
    key: "runRetentionMs",
    flag: "run-retention",
    env: ["WEFT_RUN_RETENTION"],
    kind: "duration",
    help: "how long finished runs are kept",
  },
  {
    key: "defaultHeartbeatTimeoutMs",
    flag: "default-heartbeat-timeout",
    env: ["WEFT_DEFAULT_HEARTBEAT_TIMEOUT"],
    kind: "duration",
    help: "lease heartbeat timeout when a task sets none",
  },
  {
    key: "stalledIntervalMs",
    flag: "stalled-interval",
    env: ["WEFT_STALLED_INTERVAL"],
    kind: "duration",
    help: "how often expired leases are looked for",
  },
  {
    key: "keepaliveIntervalMs",
    flag: "keepalive-interval",
    env: ["WEFT_KEEPALIVE_INTERVAL"],
    kind: "duration",
    help: "a quiet client connection gets an HTTP/2 PING after this long",
  },
  {
    key: "keepaliveTimeoutMs",
    flag: "keepalive-timeout",
    env: ["WEFT_KEEPALIVE_TIMEOUT"],
    kind: "duration",
    help: "a client connection that leaves a PING unanswered this long is closed",
  },
  {
    key: "maxWatchersPerReplica",
    flag: "max-watchers-per-replica",
    env: ["WEFT_MAX_WATCHERS_PER_REPLICA"],
    kind: "count",
    help: "most concurrent WatchRun streams per replica",
  },
  {
    key: "maxOpenQueues",
    flag: "max-open-queues",
    env: ["WEFT_MAX_OPEN_QUEUES"],
    kind: "count",
    help: "most task queues one replica serves polls for at once",
  },
  {
    key: "configFile",
    flag: "config",
    env: ["WEFT_CONFIG"],
    kind: "string",
    help: "YAML or JSON policy file: default retry, queue limits, rate-limit keys",
  },
  {
    key: "reconcileAfterMs",
    flag: "reconcile-after",
    env: ["WEFT_RECONCILE_AFTER"],
    kind: "duration",
    help: "quiet time before a run is checked for a step a crash cut short",
  },
  {
    key: "insecure",
    flag: "insecure",
    env: ["WEFT_INSECURE"],
    kind: "boolean",
    help: "serve without authentication (local development only)",
  },
  {
    key: "tlsCert",
    flag: "tls-cert",
    env: ["WEFT_TLS_CERT"],
    kind: "string",
    help: "PEM certificate file of the API port (TLS)",
  },
  {
    key: "tlsKey",
    flag: "tls-key",
    env: ["WEFT_TLS_KEY"],
    kind: "string",
    help: "PEM private key file of the API port",
  },
  {
    key: "tlsClientCa",
    flag: "tls-client-ca",
    env: ["WEFT_TLS_CLIENT_CA"],
    kind: "string",
    help: "PEM CA file: require client certificates it signed (mTLS)",
  },
  {
    key: "maxStreamsPerClient",
    flag: "max-streams-per-client",
    env: ["WEFT_MAX_STREAMS_PER_CLIENT"],
    kind: "count",
    help: "most WatchRun and WatchRuns streams one token keeps open at once",
  },
  {
    key: "maxRunsPerWatch",
    flag: "max-runs-per-watch",
    env: ["WEFT_MAX_RUNS_PER_WATCH"],
    kind: "count",
    help: "most runs one WatchRuns stream follows at once",
  },
  {
    key: "maxWatchBuffer",
    flag: "max-watch-buffer",
    env: ["WEFT_MAX_WATCH_BUFFER"],
    kind: "count",
    help: "most events a WatchRuns stream holds for a slow client before it ends the stream",
  },
];

/** What the command line asked for: run with a configuration, or print help. */
export type ParsedCommandLine = { help: true; text: string } | { help: false; config: DaemonConfig };

/**
 * Reads the configuration from flags, then `WEFT_*` variables, then defaults (first one set wins).
 * Throws {@link ConfigError} naming the flag or variable at fault.
 */
export function loadConfig(
  argv: readonly string[] = process.argv.slice(2),
  env: NodeJS.ProcessEnv = process.env,
): ParsedCommandLine {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const spec of OPTIONS) options[spec.flag] = { type: spec.kind === "boolean" ? "boolean" : "string" };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}; see weftd --help`);
  }
  if (values.help === true) return { help: true, text: helpText() };

  const partial: Record<string, unknown> = {};
  for (const spec of OPTIONS) {
    const fromFlag = values[spec.flag];
    let raw: string | undefined;
    let source: string;
    if (fromFlag === true) {
      raw = "true";
      source = `--${spec.flag}`;
    } else if (typeof fromFlag === "string") {
      raw = fromFlag;
      source = `--${spec.flag}`;
    } else {
      const name = spec.env.find((n) => env[n] !== undefined && env[n] !== "");
      if (name === undefined) continue;
      raw = env[name];
      source = name;
    }
    partial[spec.key] = parseValue(spec.kind, raw ?? "", source);
  }
  return { help: false, config: addDefaults(partial as Partial<DaemonConfig>) };
}

function parseValue(kind: Kind, raw: string, source: string): unknown {
  const value = raw.trim();
  try {
    switch (kind) {
      case "string":
        if (value === "") throw new Error("must not be empty");
        return value;
      case "addr":
        parseHostPort(value);
        return value;
      case "url":
        return checkRedisUrl(value);
      case "level":
        if (!LOG_LEVELS.includes(value as LogLevel))
          throw new Error(`must be one of ${LOG_LEVELS.join(", ")}`);
        return value;
      case "count":
        return parseCount(value);
      case "bytes":
        return parseBytes(value);
      case "duration":
        return parseDuration(value);
      case "boolean":
        if (!["true", "false", "1", "0"].includes(value)) throw new Error("must be true or false");
        return value === "true" || value === "1";
    }
  } catch (err) {
    throw new ConfigError(`${source}=${JSON.stringify(raw)}: ${(err as Error).message}`);
  }
}

function validateConfig(config: DaemonConfig): void {
  for (const spec of OPTIONS) {
    const value = config[spec.key];
    const bad = (why: string) => new ConfigError(`${spec.key} (--${spec.flag}) ${why}`);
    if (spec.kind === "count" || spec.kind === "bytes" || spec.kind === "duration") {
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
        throw bad(`must be a positive integer, got ${String(value)}`);
      }
    } else if (spec.kind === "addr") {
      parseHostPort(String(value));
    }
  }
  const needed = 2 * config.maxPayloadBytes + ANSWER_OVERHEAD_BYTES;
  if (config.maxResponseBytes < needed) {
    throw new ConfigError(
      `maxResponseBytes (--max-response-bytes) is ${config.maxResponseBytes} bytes, less than the ${needed} ` +
        `an answer needs: twice --max-payload-bytes (${config.maxPayloadBytes}, a task's output and its error) ` +
        `plus ${ANSWER_OVERHEAD_BYTES} for the rest; raise it or lower --max-payload-bytes`,
    );
  }
  if (!LOG_LEVELS.includes(config.logLevel))
    throw new ConfigError(`logLevel must be one of ${LOG_LEVELS.join(", ")}`);
  if (config.prefix === "" || /[{}\s]/.test(config.prefix)) {
    throw new ConfigError(
      `prefix must be non-empty without spaces or braces, got ${JSON.stringify(config.prefix)}`,
    );
  }
}

/** The `--help` text: every flag, its variables and its default. */
export function helpText(): string {
  const lines = [
    "weftd: the Weft workflow-orchestration daemon",
    "",
    "Usage: weftd [flags]",
    "",
    "Every flag can also be set with the environment variable shown; flags win.",
    "Durations take ms, s, m, h or d (e.g. 500ms, 30s, 7d; a bare number is milliseconds).",
    "Sizes take B, KB, KiB, MB, MiB, GB or GiB (e.g. 64KiB; a bare number is bytes).",
    "",
  ];
  for (const spec of OPTIONS) {
    lines.push(
      spec.kind === "boolean"
        ? `  --${spec.flag}`
        : `  --${spec.flag} <${spec.kind === "addr" ? "host:port" : spec.kind}>`,
    );
    lines.push(`      ${spec.help}`);
    lines.push(`      env: ${spec.env.join(", ")}; default: ${formatDefault(spec)}`);
  }
  lines.push("  -h, --help", "      print this help and exit", "");
  return lines.join("\n");
}

function formatDefault(spec: OptionSpec): string {
  const value = DEFAULT_CONFIG[spec.key];
  if (value === undefined) return "none";
  if (spec.kind === "bytes") return formatBytes(value as number);
  if (spec.kind === "duration") return formatDuration(value as number);
  return String(value);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "500ms", "30s", "1.5m", "2h", "7d" or a bare number of milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/i.exec(text.trim());
  if (match === null) throw new Error("expected a duration such as 500ms, 30s, 5m, 2h or 7d");
  const unit = DURATION_UNITS[(match[2] ?? "ms").toLowerCase()] ?? 1;
  return checkPositiveInteger(Math.round(Number(match[1]) * unit));
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  kib: 1024,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/** Parses "4MiB", "64KiB", "1MB", "512B" or a bare number of bytes. */
export function parseBytes(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?$/i.exec(text.trim());
  if (match === null) throw new Error("expected a size such as 512B, 64KiB, 4MiB or 1GB");
  const unit = SIZE_UNITS[(match[2] ?? "b").toLowerCase()] ?? 1;
  return checkPositiveInteger(Math.round(Number(match[1]) * unit));
}

function parseCount(text: string): number {
  if (!/^\d+$/.test(text)) throw new Error("expected a positive whole number");
  return checkPositiveInteger(Number(text));
}

function checkPositiveInteger(value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error("must be greater than zero");
  return value;
}

/** Formats a duration in the largest unit that divides it, e.g. 604800000 → "7d". */
function formatDuration(ms: number): string {
  for (const unit of ["d", "h", "m", "s"]) {
    const size = DURATION_UNITS[unit] ?? 1;
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

function formatBytes(bytes: number): string {
  for (const unit of ["GiB", "MiB", "KiB"]) {
    const size = SIZE_UNITS[unit.toLowerCase()] ?? 1;
    if (bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}

/** Splits "host:port", "[::1]:port", ":port" or "port" (host defaults to 127.0.0.1). */
export function parseHostPort(addr: string): { host: string; port: number } {
  const text = addr.trim();
  const match = /^\d+$/.test(text)
    ? [text, undefined, undefined, text]
    : /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(text);
  const port = Number(match?.[3]);
  if (match === null || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`invalid address ${JSON.stringify(addr)}: expected host:port, e.g. 127.0.0.1:7233`);
  }
  const host = match[1] ?? match[2] ?? "";
  return { host: host === "" ? "127.0.0.1" : host, port };
}

/** Checks a Redis URL (see parseRedisTarget): one server, a Cluster, or Sentinels. */
function checkRedisUrl(text: string): string {
  const target = parseRedisTarget(text);
  return target.kind === "standalone" ? target.url : text;
}
