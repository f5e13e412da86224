import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { RetryPolicySchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { describe, expect, it } from "vitest";
import {
  backoffDelayMs,
  backoffSeed,
  DEFAULT_RETRY_POLICY,
  isRetryable,
  type ResolvedRetryPolicy,
  resolveRetryPolicy,
  seededFraction,
} from "./retry-policy.js";

const policy: ResolvedRetryPolicy = {
  maxAttempts: 5,
  initialBackoffMs: 1_000,
  backoffCoefficient: 2,
  maxBackoffMs: 10_000,
  jitter: 0,
  nonRetryableErrorTypes: ["BadInput"],
};

describe("DEFAULT_RETRY_POLICY", () => {
  it("is 3 attempts, 1s doubling up to 100s, 20% jitter", () => {
    expect(DEFAULT_RETRY_POLICY).toEqual({
      maxAttempts: 3,
      initialBackoffMs: 1_000,
      backoffCoefficient: 2,
      maxBackoffMs: 100_000,
      jitter: 0.2,
      nonRetryableErrorTypes: [],
    });
  });
});

describe("resolveRetryPolicy", () => {
  it("falls back field by field: task, then workflow, then daemon default", () => {
    const task = create(RetryPolicySchema, { maxAttempts: 9, jitter: 0 });
    const workflow = create(RetryPolicySchema, {
      maxAttempts: 4,
      initialBackoff: durationFromMs(250),
      backoffCoefficient: 1.5,
      nonRetryableErrorTypes: ["Fatal"],
    });
    expect(resolveRetryPolicy(task, workflow, DEFAULT_RETRY_POLICY)).toEqual({
      maxAttempts: 9,
      initialBackoffMs: 250,
      backoffCoefficient: 1.5,
      maxBackoffMs: 100_000,
      jitter: 0,
      nonRetryableErrorTypes: ["Fatal"],
    });
    expect(resolveRetryPolicy(undefined, undefined, DEFAULT_RETRY_POLICY)).toEqual(DEFAULT_RETRY_POLICY);
  });

  it("keeps an explicit zero duration and an explicit zero jitter", () => {
    const task = create(RetryPolicySchema, { initialBackoff: {}, jitter: 0 });
    const r = resolveRetryPolicy(task, undefined, DEFAULT_RETRY_POLICY);
    expect(r.initialBackoffMs).toBe(0);
    expect(r.jitter).toBe(0);
  });

  it("returns a list the caller may change without touching the defaults", () => {
    const r = resolveRetryPolicy(undefined, undefined, DEFAULT_RETRY_POLICY);
    r.nonRetryableErrorTypes.push("X");
    expect(DEFAULT_RETRY_POLICY.nonRetryableErrorTypes).toEqual([]);
  });
});

describe("backoffDelayMs", () => {
  it("grows by the coefficient without jitter", () => {
    const delays = [1, 2, 3, 4, 5, 6].map((n) => backoffDelayMs(policy, n, "s"));
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
  });

  it("holds the cap for huge attempt numbers", () => {
    expect(backoffDelayMs(policy, 1_000, "s")).toBe(10_000);
    expect(backoffDelayMs(policy, 1e9, "s")).toBe(10_000);
    expect(backoffDelayMs({ ...policy, jitter: 1 }, 1e9, "s")).toBeLessThanOrEqual(10_000);
  });

  it("handles a coefficient of 1 and a zero initial backoff", () => {
    expect(backoffDelayMs({ ...policy, backoffCoefficient: 1 }, 7, "s")).toBe(1_000);
    expect(backoffDelayMs({ ...policy, initialBackoffMs: 0 }, 1e9, "s")).toBe(0);
  });

  it("with jitter stays within bounds and is deterministic per seed", () => {
    const jittered = { ...policy, jitter: 0.5 };
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const seed = backoffSeed("8f9e2c1a-0000-4000-8000-000000000000", `task${i}`, 3);
      const d = backoffDelayMs(jittered, 3, seed);
      expect(d).toBeGreaterThanOrEqual(2_000);
      expect(d).toBeLessThanOrEqual(4_000);
      expect(Number.isInteger(d)).toBe(true);
      expect(backoffDelayMs(jittered, 3, seed)).toBe(d);
      seen.add(d);
    }
    expect(seen.size).toBeGreaterThan(150);
  });

  it("derives the same delay from the same seed text", () => {
    const jittered = { ...policy, jitter: 0.2 };
    const a = backoffDelayMs(jittered, 2, backoffSeed("run", "task", 2));
    const b = backoffDelayMs({ ...jittered }, 2, "run/task/2");
    expect(a).toBe(b);
  });
});

describe("seededFraction", () => {
  it("is in [0, 1) and spreads evenly", () => {
    const buckets = new Array<number>(10).fill(0);
    for (let i = 0; i < 10_000; i++) {
      const f = seededFraction(`seed-${i}`);
      expect(f).toBeGreaterThanOrEqual(0);
      expect(f).toBeLessThan(1);
      buckets[Math.floor(f * 10)]! += 1;
    }
    for (const count of buckets) expect(count).toBeGreaterThan(800);
  });

  it("is a fixed function of its input", () => {
    expect(seededFraction("")).toBe(seededFraction(""));
    expect(seededFraction("a")).not.toBe(seededFraction("b"));
    expect(seededFraction("héllo")).toBe(seededFraction("h\u00e9llo"));
  });
});

describe("isRetryable", () => {
  it.each([
    ["retryable error with attempts left", "Timeout", true, 4, true],
    ["last attempt", "Timeout", true, 5, false],
    ["past the last attempt", "Timeout", true, 6, false],
    ["worker marked it final", "Timeout", false, 1, false],
    ["non-retryable type", "BadInput", true, 1, false],
    ["untyped error", "", true, 1, true],
  ] as const)("%s", (_name, type, flag, attempt, expected) => {
    expect(isRetryable(policy, type, flag, attempt)).toBe(expected);
  });

  it("never retries with max_attempts 1", () => {
    expect(isRetryable({ ...policy, maxAttempts: 1 }, "X", true, 1)).toBe(false);
  });
});
