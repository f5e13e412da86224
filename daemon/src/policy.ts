import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { type PublicService, SCOPES, type Scope, type TokenConfig } from "./auth.js";
import { ConfigError, parseDuration } from "./config.js";
import {
  CIRCUIT_DEFAULTS,
  type CircuitSettings,
  DEFAULT_RETRY_POLICY,
  type ResolvedRetryPolicy,
} from "./engine/definitions/index.js";
import { parseRedisTarget } from "./redis/redis-target.js";

/** A rate limit: at most `max` starts per `perMs`. */
export interface Limit {
  max: number;
  perMs: number;
}

/** Limits of one task queue, applied at startup. */
export interface QueuePolicy {
  rateLimit?: Limit;
  concurrency?: number;
  paused?: boolean;
  /** The queue's circuit breaker (see weft.v1.CircuitBreaker). */
  circuitBreaker?: CircuitSettings;
}

/** A rate limit shared by every task whose rate-limit key matches `pattern` (`*` matches anything). */
export interface KeyPolicy extends Limit {
  pattern: string;
  /** The pattern as a regular expression. */
  regex: RegExp;
}

/** The policy settings of weftd's configuration file. */
export interface Policy {
  /** Retry policy of tasks and workflows that set none. */
  retry: ResolvedRetryPolicy;
  /** Limits per task queue name. */
  queues: Map<string, QueuePolicy>;
  /** Rate limits per rate-limit key pattern; the first match applies. */
  keys: KeyPolicy[];
  /** Bearer tokens (hashed) and their scopes; none configured: authentication is off. */
  tokens: TokenConfig[];
  /** Services open without a token; the others need a known token (any scope). */
  publicServices: PublicService[];
  /** `redis.url`: the Redis to use when neither --redis-url nor its variables name one. */
  redisUrl?: string;
}

/** The policy when no configuration file is given. */
export function defaultPolicy(): Policy {
  return {
    retry: { ...DEFAULT_RETRY_POLICY },
    queues: new Map(),
    keys: [],
    tokens: [],
    publicServices: ["health", "reflection"],
  };
}

/** Reads and checks a YAML or JSON policy file; throws ConfigError naming the setting at fault. */
export function loadPolicy(path: string | undefined): Policy {
  if (path === undefined) return defaultPolicy();
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ConfigError(`--config ${path}: ${(err as Error).message}`);
  }
  return parsePolicy(doc ?? {}, path);
}

/** Checks a parsed policy document. */
export function parsePolicy(doc: unknown, source = "config"): Policy {
  const fail = (at: string, problem: string): never => {
    throw new ConfigError(`${source}: ${at}: ${problem}`);
  };
  const object = (v: unknown, at: string): Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : fail(at, "must be a mapping");
  const duration = (v: unknown, at: string): number => {
    if (typeof v === "number" && v >= 0) return v;
    if (typeof v === "string") {
      try {
        return parseDuration(v);
      } catch {
        // reported below
      }
    }
    return fail(at, 'must be a duration such as "500ms", "1s" or "2m"');
  };
  const integer = (v: unknown, at: string, min: number): number =>
    typeof v === "number" && Number.isInteger(v) && v >= min
      ? v
      : fail(at, `must be an integer of at least ${min}`);
  const limit = (v: unknown, at: string): Limit => {
    const o = object(v, at);
    const perMs = duration(o.per, `${at}.per`);
    if (perMs < 1) fail(`${at}.per`, "must be at least 1ms");
    return { max: integer(o.max, `${at}.max`, 1), perMs };
  };

  const circuit = (v: unknown, at: string): CircuitSettings => {
    const o = object(v, at);
    for (const key of Object.keys(o)) {
      if (!["perHandler", "failureThreshold", "window", "openDuration", "halfOpenProbes"].includes(key)) {
        fail(
          `${at}.${key}`,
          "is not a setting (perHandler, failureThreshold, window, openDuration, halfOpenProbes)",
        );
      }
    }
    const positiveMs = (value: unknown, field: string, fallback: number) => {
      if (value === undefined) return fallback;
      const ms = duration(value, `${at}.${field}`);
      return ms >= 1 ? ms : fail(`${at}.${field}`, "must be at least 1ms");
    };
    if (o.perHandler !== undefined && typeof o.perHandler !== "boolean")
      fail(`${at}.perHandler`, "must be true or false");
    return {
      perHandler: o.perHandler === true,
      failureThreshold:
        o.failureThreshold === undefined
          ? CIRCUIT_DEFAULTS.failureThreshold
          : integer(o.failureThreshold, `${at}.failureThreshold`, 1),
      windowMs: positiveMs(o.window, "window", CIRCUIT_DEFAULTS.windowMs),
      openMs: positiveMs(o.openDuration, "openDuration", CIRCUIT_DEFAULTS.openMs),
      halfOpenProbes:
        o.halfOpenProbes === undefined
          ? CIRCUIT_DEFAULTS.halfOpenProbes
          : integer(o.halfOpenProbes, `${at}.halfOpenProbes`, 1),
    };
  };

  const root = object(doc, "the file");
  for (const key of Object.keys(root)) {
    if (!["retry", "queues", "rateLimitKeys", "auth", "redis"].includes(key)) {
      fail(key, "is not a setting (retry, queues, rateLimitKeys, auth, redis)");
    }
  }
  const policy = defaultPolicy();
  if (root.retry !== undefined) {
    const r = object(root.retry, "retry");
    const p = policy.retry;
    if (r.maxAttempts !== undefined) p.maxAttempts = integer(r.maxAttempts, "retry.maxAttempts", 1);
    if (r.initialBackoff !== undefined)
      p.initialBackoffMs = duration(r.initialBackoff, "retry.initialBackoff");
    if (r.maxBackoff !== undefined) p.maxBackoffMs = duration(r.maxBackoff, "retry.maxBackoff");
    if (r.backoffCoefficient !== undefined) {
      const c = r.backoffCoefficient;
      p.backoffCoefficient =
        typeof c === "number" && c >= 1 ? c : fail("retry.backoffCoefficient", "must be at least 1");
    }
    if (r.jitter !== undefined) {
      const j = r.jitter;
      p.jitter =
        typeof j === "number" && j >= 0 && j <= 1 ? j : fail("retry.jitter", "must be between 0 and 1");
    }
    if (r.nonRetryableErrorTypes !== undefined) {
      const types = r.nonRetryableErrorTypes;
      if (!Array.isArray(types) || !types.every((t) => typeof t === "string")) {
        fail("retry.nonRetryableErrorTypes", "must be a list of error type names");
      }
      p.nonRetryableErrorTypes = types as string[];
    }
  }
  if (root.queues !== undefined) {
    for (const [name, value] of Object.entries(object(root.queues, "queues"))) {
      const at = `queues.${name}`;
      if (!/^[A-Za-z0-9_.-]{1,128}$/.test(name))
        fail(at, "is not a queue name ([A-Za-z0-9_.-], 1-128 characters)");
      const q = object(value, at);
      const queue: QueuePolicy = {};
      if (q.rateLimit !== undefined) queue.rateLimit = limit(q.rateLimit, `${at}.rateLimit`);
      if (q.concurrency !== undefined) queue.concurrency = integer(q.concurrency, `${at}.concurrency`, 1);
      if (q.paused !== undefined) queue.paused = q.paused === true;
      if (q.circuitBreaker !== undefined)
        queue.circuitBreaker = circuit(q.circuitBreaker, `${at}.circuitBreaker`);
      policy.queues.set(name, queue);
    }
  }
  if (root.rateLimitKeys !== undefined) {
    if (!Array.isArray(root.rateLimitKeys)) fail("rateLimitKeys", "must be a list");
    (root.rateLimitKeys as unknown[]).forEach((entry, i) => {
      const at = `rateLimitKeys[${i}]`;
      const o = object(entry, at);
      if (typeof o.pattern !== "string" || o.pattern === "") fail(`${at}.pattern`, "is required");
      const pattern = o.pattern as string;
      policy.keys.push({ pattern, regex: globToRegex(pattern), ...limit(o, at) });
    });
  }
  if (root.redis !== undefined) {
    const redis = object(root.redis, "redis");
    for (const key of Object.keys(redis)) if (key !== "url") fail(`redis.${key}`, "is not a setting (url)");
    if (typeof redis.url !== "string" || redis.url.trim() === "") fail("redis.url", "must be a Redis URL");
    try {
      parseRedisTarget((redis.url as string).trim());
    } catch (err) {
      fail("redis.url", (err as Error).message);
    }
    policy.redisUrl = (redis.url as string).trim();
  }
  if (root.auth !== undefined) {
    const auth = object(root.auth, "auth");
    if (auth.public !== undefined) {
      const services = auth.public;
      if (!Array.isArray(services) || !services.every((s) => s === "health" || s === "reflection")) {
        fail("auth.public", "must list services among health and reflection");
      }
      policy.publicServices = services as PublicService[];
    }
    if (!Array.isArray(auth.tokens)) fail("auth.tokens", "must be a list");
    const names = new Set<string>();
    (auth.tokens as unknown[]).forEach((entry, i) => {
      const at = `auth.tokens[${i}]`;
      const t = object(entry, at);
      if (typeof t.name !== "string" || t.name === "") fail(`${at}.name`, "is required");
      if (names.has(t.name as string)) fail(`${at}.name`, `"${t.name}" is used twice`);
      names.add(t.name as string);
      if (typeof t.sha256 !== "string" || !/^[0-9a-fA-F]{64}$/.test(t.sha256)) {
        fail(`${at}.sha256`, "must be the hex SHA-256 of the token (never the token itself)");
      }
      if (!Array.isArray(t.scopes) || t.scopes.length === 0)
        fail(`${at}.scopes`, "must list at least one scope");
      for (const scope of t.scopes as unknown[]) {
        if (!SCOPES.includes(scope as Scope))
          fail(`${at}.scopes`, `"${String(scope)}" is not one of ${SCOPES.join(", ")}`);
      }
      const queues = t.queues ?? [];
      if (!Array.isArray(queues) || !queues.every((q) => typeof q === "string"))
        fail(`${at}.queues`, "must be a list of queue names");
      if ((t.scopes as Scope[]).includes("worker") && (queues as string[]).length === 0) {
        fail(`${at}.queues`, 'a worker token must name its queues (or "*")');
      }
      policy.tokens.push({
        name: t.name as string,
        sha256: (t.sha256 as string).toLowerCase(),
        scopes: t.scopes as Scope[],
        queues: queues as string[],
      });
    });
  }
  return policy;
}

/** The key policy that applies to a rate-limit key, if any. */
export function keyPolicyOf(policy: Policy, key: string): KeyPolicy | undefined {
  return policy.keys.find((k) => k.regex.test(key));
}

function globToRegex(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*");
  return new RegExp(`^${escaped}$`);
}
