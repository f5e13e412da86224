import { describe, expect, it } from "vitest";
import { keyPolicyOf, parsePolicy } from "./policy.js";

describe("parsePolicy", () => {
  it("reads the retry default, queue limits and key patterns", () => {
    const policy = parsePolicy({
      retry: { maxAttempts: 5, initialBackoff: "500ms", maxBackoff: "30s", backoffCoefficient: 3, jitter: 0 },
      queues: { emails: { rateLimit: { max: 5, per: "1s" }, concurrency: 20 } },
      rateLimitKeys: [
        { pattern: "tenant-*", max: 2, per: "1s" },
        { pattern: "*", max: 100, per: "1m" },
      ],
    });
    expect(policy.retry).toMatchObject({
      maxAttempts: 5,
      initialBackoffMs: 500,
      maxBackoffMs: 30_000,
      backoffCoefficient: 3,
      jitter: 0,
    });
    expect(policy.queues.get("emails")).toEqual({ rateLimit: { max: 5, perMs: 1000 }, concurrency: 20 });
    expect(keyPolicyOf(policy, "tenant-acme")?.max).toBe(2);
    expect(keyPolicyOf(policy, "stripe")?.max).toBe(100);
    expect(keyPolicyOf(parsePolicy({}), "tenant-acme")).toBeUndefined();
  });

  it("reads a queue's circuit breaker, defaults filled in", () => {
    const policy = parsePolicy({
      queues: {
        payments: {
          circuitBreaker: { perHandler: true, failureThreshold: 3, window: "10s", openDuration: "5s" },
        },
        emails: { circuitBreaker: {} },
      },
    });
    expect(policy.queues.get("payments")?.circuitBreaker).toEqual({
      perHandler: true,
      failureThreshold: 3,
      windowMs: 10_000,
      openMs: 5000,
      halfOpenProbes: 1,
    });
    expect(policy.queues.get("emails")?.circuitBreaker).toEqual({
      perHandler: false,
      failureThreshold: 5,
      windowMs: 60_000,
      openMs: 30_000,
      halfOpenProbes: 1,
    });
  });

  it.each([
    [
      { queues: { q: { circuitBreaker: { threshold: 3 } } } },
      "config: queues.q.circuitBreaker.threshold: is not a setting (perHandler, failureThreshold, window, openDuration, halfOpenProbes)",
    ],
    [
      { queues: { q: { circuitBreaker: { failureThreshold: 0 } } } },
      "config: queues.q.circuitBreaker.failureThreshold: must be an integer of at least 1",
    ],
    [
      { queues: { q: { circuitBreaker: { openDuration: 0 } } } },
      "config: queues.q.circuitBreaker.openDuration: must be at least 1ms",
    ],
    [
      { queues: { q: { circuitBreaker: { perHandler: "yes" } } } },
      "config: queues.q.circuitBreaker.perHandler: must be true or false",
    ],
  ])("rejects circuit breaker %j naming the setting", (doc, message) => {
    expect(() => parsePolicy(doc)).toThrow(message);
  });

  it("reads the Redis URL of any form", () => {
    expect(parsePolicy({}).redisUrl).toBeUndefined();
    expect(parsePolicy({ redis: { url: " redis+cluster://a:1,b:2 " } }).redisUrl).toBe(
      "redis+cluster://a:1,b:2",
    );
    expect(parsePolicy({ redis: { url: "redis+sentinel://s1,s2/m" } }).redisUrl).toBe(
      "redis+sentinel://s1,s2/m",
    );
  });

  it.each([
    [{ retrys: {} }, "config: retrys: is not a setting (retry, queues, rateLimitKeys, auth, redis)"],
    [{ retry: { maxAttempts: 0 } }, "config: retry.maxAttempts: must be an integer of at least 1"],
    [{ retry: { jitter: 2 } }, "config: retry.jitter: must be between 0 and 1"],
    [{ queues: { "a:b": {} } }, "config: queues.a:b: is not a queue name ([A-Za-z0-9_.-], 1-128 characters)"],
    [
      { queues: { q: { rateLimit: { max: 5, per: "soon" } } } },
      'config: queues.q.rateLimit.per: must be a duration such as "500ms", "1s" or "2m"',
    ],
    [
      { queues: { q: { concurrency: -1 } } },
      "config: queues.q.concurrency: must be an integer of at least 1",
    ],
    [{ rateLimitKeys: [{ max: 1, per: "1s" }] }, "config: rateLimitKeys[0].pattern: is required"],
    [{ rateLimitKeys: {} }, "config: rateLimitKeys: must be a list"],
    [{ redis: "redis://x" }, "config: redis: must be a mapping"],
    [{ redis: { url: "" } }, "config: redis.url: must be a Redis URL"],
    [{ redis: { host: "x" } }, "config: redis.host: is not a setting (url)"],
    [{ redis: { url: "http://x" } }, "config: redis.url: unknown scheme http: expected redis://"],
    [{ redis: { url: "redis+sentinel://s1:26379" } }, "config: redis.url: names no primary"],
    [
      { auth: { tokens: [{ name: "ci", sha256: "plaintext-token", scopes: ["runs:read"] }] } },
      "config: auth.tokens[0].sha256: must be the hex SHA-256 of the token (never the token itself)",
    ],
    [
      { auth: { tokens: [{ name: "w", sha256: "a".repeat(64), scopes: ["worker"] }] } },
      'config: auth.tokens[0].queues: a worker token must name its queues (or "*")',
    ],
    [
      { auth: { tokens: [{ name: "x", sha256: "a".repeat(64), scopes: ["root"] }] } },
      'config: auth.tokens[0].scopes: "root" is not one of workflows:write, runs:trigger, runs:read, runs:cancel, runs:resume, failures, admin, worker',
    ],
  ])("rejects %j naming the setting", (doc, message) => {
    expect(() => parsePolicy(doc)).toThrow(message);
  });
});
