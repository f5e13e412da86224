import { describe, expect, it } from "vitest";
import {
  addDefaults,
  ConfigError,
  type DaemonConfig,
  DEFAULT_CONFIG,
  loadConfig,
  parseBytes,
  parseDuration,
  parseHostPort,
  redactRedisUrl,
} from "./config.js";

function config(argv: string[], env: NodeJS.ProcessEnv = {}): DaemonConfig {
  const parsed = loadConfig(argv, env);
  if (parsed.help) throw new Error("unexpected --help");
  return parsed.config;
}

describe("loadConfig", () => {
  it("applies the documented defaults", () => {
    expect(config([])).toEqual({
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
      maxResponseBytes: 4 * 1024 * 1024,
      runRetentionMs: 7 * 24 * 3600 * 1000,
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
    });
  });

  it("reads every flag", () => {
    const argv = [
      "--addr=0.0.0.0:0",
      "--metrics-addr",
      "[::1]:9000",
      "--redis-url",
      "redis://:secret@db:6380/2",
      "--prefix",
      "acme",
      "--log-level",
      "debug",
      "--max-request-bytes",
      "64KiB",
      "--shutdown-grace",
      "2s",
      "--poll-wait-cap",
      "1m",
      "--max-tasks-per-workflow",
      "50",
      "--max-payload-bytes",
      "2MB",
      "--max-response-bytes",
      "5MiB",
      "--run-retention",
      "1d",
      "--default-heartbeat-timeout",
      "1500ms",
      "--stalled-interval",
      "250",
      "--keepalive-interval",
      "2s",
      "--keepalive-timeout",
      "750ms",
      "--max-watchers-per-replica",
      "7",
      "--max-open-queues",
      "12",
      "--config",
      "/etc/weft.yaml",
      "--reconcile-after",
      "3s",
      "--insecure",
      "--tls-cert",
      "cert.pem",
      "--tls-key",
      "key.pem",
      "--tls-client-ca",
      "ca.pem",
      "--max-streams-per-client",
      "9",
      "--max-runs-per-watch",
      "300",
      "--max-watch-buffer",
      "400",
    ];
    expect(config(argv)).toEqual({
      addr: "0.0.0.0:0",
      metricsAddr: "[::1]:9000",
      redisUrl: "redis://:secret@db:6380/2",
      prefix: "acme",
      logLevel: "debug",
      maxRequestBytes: 65_536,
      shutdownGraceMs: 2000,
      pollWaitCapMs: 60_000,
      maxTasksPerWorkflow: 50,
      maxPayloadBytes: 2_000_000,
      maxResponseBytes: 5 * 1024 * 1024,
      runRetentionMs: 86_400_000,
      defaultHeartbeatTimeoutMs: 1500,
      stalledIntervalMs: 250,
      keepaliveIntervalMs: 2000,
      keepaliveTimeoutMs: 750,
      maxWatchersPerReplica: 7,
      maxOpenQueues: 12,
      configFile: "/etc/weft.yaml",
      reconcileAfterMs: 3000,
      insecure: true,
      tlsCert: "cert.pem",
      tlsKey: "key.pem",
      tlsClientCa: "ca.pem",
      maxStreamsPerClient: 9,
      maxRunsPerWatch: 300,
      maxWatchBuffer: 400,
    });
  });

  it("reads WEFT_* variables, and REDIS_URL when WEFT_REDIS_URL is unset", () => {
    const env = {
      WEFT_ADDR: "127.0.0.1:1",
      WEFT_SHUTDOWN_GRACE: "3s",
      WEFT_MAX_REQUEST_BYTES: "1MiB",
      WEFT_RUN_RETENTION: "12h",
      REDIS_URL: "redis://fallback:6379",
    };
    expect(config([], env)).toMatchObject({
      addr: "127.0.0.1:1",
      shutdownGraceMs: 3000,
      maxRequestBytes: 1024 * 1024,
      runRetentionMs: 12 * 3600 * 1000,
      redisUrl: "redis://fallback:6379",
    });
    expect(config([], { ...env, WEFT_REDIS_URL: "redis://primary:6379" }).redisUrl).toBe(
      "redis://primary:6379",
    );
  });

  it("takes a Redis Cluster or Sentinels as --redis-url, as given", () => {
    expect(config(["--redis-url", "redis+cluster://10.0.0.1:7000,10.0.0.2:7001"]).redisUrl).toBe(
      "redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
    );
    expect(config([], { REDIS_URL: "rediss+sentinel://s1,s2/mymaster?sentinelPassword=x" }).redisUrl).toBe(
      "rediss+sentinel://s1,s2/mymaster?sentinelPassword=x",
    );
    expect(() => config(["--redis-url", "redis+cluster://h:7000/0"])).toThrow(
      new ConfigError(
        '--redis-url="redis+cluster://h:7000/0": a Redis Cluster has no databases or names, got the path "/0"',
      ),
    );
  });

  it("lets flags win over variables, and ignores empty variables", () => {
    expect(config(["--prefix", "flag"], { WEFT_PREFIX: "env" }).prefix).toBe("flag");
    expect(config([], { WEFT_PREFIX: "" }).prefix).toBe("weft");
  });

  it("names the flag or variable at fault", () => {
    expect(() => config(["--shutdown-grace", "soon"])).toThrow(
      new ConfigError('--shutdown-grace="soon": expected a duration such as 500ms, 30s, 5m, 2h or 7d'),
    );
    expect(() => config([], { WEFT_MAX_REQUEST_BYTES: "0" })).toThrow(
      new ConfigError('WEFT_MAX_REQUEST_BYTES="0": must be greater than zero'),
    );
    expect(() => config(["--log-level", "loud"])).toThrow(/--log-level="loud": must be one of fatal, error/);
    expect(() => config(["--redis-url", "http://x"])).toThrow(
      /unknown scheme http: expected redis:\/\/\[user:password@\]host:port/,
    );
    expect(() => config(["--addr", "nope"])).toThrow(/invalid address "nope"/);
    expect(() => config(["--max-open-queues", "0"])).toThrow(
      /--max-open-queues="0": must be greater than zero/,
    );
    expect(() => config([], { WEFT_MAX_OPEN_QUEUES: "many" })).toThrow(/WEFT_MAX_OPEN_QUEUES="many"/);
    expect(() => config(["--keepalive-interval", "0s"])).toThrow(
      new ConfigError('--keepalive-interval="0s": must be greater than zero'),
    );
    expect(() => config([], { WEFT_KEEPALIVE_TIMEOUT: "often" })).toThrow(
      new ConfigError('WEFT_KEEPALIVE_TIMEOUT="often": expected a duration such as 500ms, 30s, 5m, 2h or 7d'),
    );
    expect(() => config(["--max-response-bytes", "lots"])).toThrow(
      new ConfigError('--max-response-bytes="lots": expected a size such as 512B, 64KiB, 4MiB or 1GB'),
    );
    expect(() => config([], { WEFT_MAX_RESPONSE_BYTES: "0" })).toThrow(
      new ConfigError('WEFT_MAX_RESPONSE_BYTES="0": must be greater than zero'),
    );
    expect(() => config(["--bogus"])).toThrow(ConfigError);
    expect(() => config(["--bogus"])).toThrow(/see weftd --help/);
  });

  it("prints help listing every flag, its variables and its default", () => {
    const parsed = loadConfig(["--help"], {});
    expect(parsed.help).toBe(true);
    const text = parsed.help ? parsed.text : "";
    for (const line of [
      "--addr <host:port>",
      "env: WEFT_ADDR; default: 127.0.0.1:7233",
      "env: WEFT_METRICS_ADDR; default: 127.0.0.1:9233",
      "env: WEFT_REDIS_URL, REDIS_URL; default: none",
      "env: WEFT_PREFIX; default: weft",
      "env: WEFT_LOG_LEVEL; default: info",
      "env: WEFT_MAX_REQUEST_BYTES; default: 4MiB",
      "env: WEFT_SHUTDOWN_GRACE; default: 10s",
      "env: WEFT_POLL_WAIT_CAP; default: 30s",
      "env: WEFT_MAX_TASKS_PER_WORKFLOW; default: 10000",
      "env: WEFT_MAX_PAYLOAD_BYTES; default: 1MiB",
      "--max-response-bytes <bytes>",
      "env: WEFT_MAX_RESPONSE_BYTES; default: 4MiB",
      "env: WEFT_RUN_RETENTION; default: 7d",
      "env: WEFT_DEFAULT_HEARTBEAT_TIMEOUT; default: 30s",
      "env: WEFT_STALLED_INTERVAL; default: 5s",
      "env: WEFT_MAX_WATCHERS_PER_REPLICA; default: 10000",
      "env: WEFT_MAX_OPEN_QUEUES; default: 1000",
    ]) {
      expect(text).toContain(line);
    }
    expect(loadConfig(["-h"], {}).help).toBe(true);
  });
});

describe("the answer limit", () => {
  it("must hold two payloads plus 64 KiB", () => {
    expect(config(["--max-payload-bytes", "96KiB", "--max-response-bytes", "256KiB"])).toMatchObject({
      maxPayloadBytes: 96 * 1024,
      maxResponseBytes: 256 * 1024,
    });
    expect(() => config(["--max-payload-bytes", "97KiB", "--max-response-bytes", "256KiB"])).toThrow(
      new ConfigError(
        "maxResponseBytes (--max-response-bytes) is 262144 bytes, less than the 264192 an answer needs: " +
          "twice --max-payload-bytes (99328, a task's output and its error) plus 65536 for the rest; " +
          "raise it or lower --max-payload-bytes",
      ),
    );
    // The default answer limit refuses a payload limit it cannot hold.
    expect(() => config(["--max-payload-bytes", "2MiB"])).toThrow(/less than the 4259840 an answer needs/);
    expect(() => config([], { WEFT_MAX_RESPONSE_BYTES: "1MiB" })).toThrow(
      /maxResponseBytes \(--max-response-bytes\) is 1048576 bytes/,
    );
  });
});

describe("addDefaults", () => {
  it("fills unset fields and keeps the given ones", () => {
    expect(addDefaults({ prefix: "p", redisUrl: undefined })).toEqual({ ...DEFAULT_CONFIG, prefix: "p" });
  });

  it("rejects values no flag could produce", () => {
    expect(() => addDefaults({ shutdownGraceMs: -1 })).toThrow(
      /shutdownGraceMs \(--shutdown-grace\) must be a positive/,
    );
    expect(() => addDefaults({ prefix: "a{b}" })).toThrow(
      /prefix must be non-empty without spaces or braces/,
    );
  });
});

describe("parsers", () => {
  it.each([
    ["500ms", 500],
    ["30s", 30_000],
    ["1.5m", 90_000],
    ["2h", 7_200_000],
    ["7d", 604_800_000],
    ["250", 250],
    ["10S", 10_000],
  ])("parseDuration(%j) = %d", (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(["", "-1s", "1w", "s", "0"])("parseDuration rejects %j", (text) => {
    expect(() => parseDuration(text)).toThrow();
  });

  it.each([
    ["512", 512],
    ["512B", 512],
    ["64KiB", 65_536],
    ["64kb", 64_000],
    ["4MiB", 4_194_304],
    ["1.5MiB", 1_572_864],
    ["1GB", 1e9],
  ])("parseBytes(%j) = %d", (text, bytes) => expect(parseBytes(text)).toBe(bytes));

  it.each(["", "4 MiBs", "1TB", "-1", "0KiB"])("parseBytes rejects %j", (text) => {
    expect(() => parseBytes(text)).toThrow();
  });

  it.each([
    ["127.0.0.1:7233", "127.0.0.1", 7233],
    ["0.0.0.0:0", "0.0.0.0", 0],
    ["[::1]:9000", "::1", 9000],
    [":8080", "127.0.0.1", 8080],
    ["8080", "127.0.0.1", 8080],
    ["localhost:1", "localhost", 1],
  ])("parseHostPort(%j)", (text, host, port) => expect(parseHostPort(text)).toEqual({ host, port }));

  it.each(["", "host", "host:", "host:70000", "::1:80"])("parseHostPort rejects %j", (text) => {
    expect(() => parseHostPort(text)).toThrow(ConfigError);
  });

  it("redacts the Redis password for logs", () => {
    expect(redactRedisUrl("redis://user:secret@db:6379/0")).toBe("redis://user:***@db:6379/0");
    expect(redactRedisUrl("redis://db:6379")).toBe("redis://db:6379");
  });
});
