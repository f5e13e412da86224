import type { Duration } from "@bufbuild/protobuf/wkt";
import type { RetryPolicy } from "@weft/sdk/gen/weft/v1/workflow_pb.js";

/** A retry policy with every field decided (task → workflow → daemon default). */
export interface ResolvedRetryPolicy {
  /** Total attempts including the first; 1 means no retry. */
  maxAttempts: number;
  /** Delay before the first retry, in ms. */
  initialBackoffMs: number;
  /** Multiplier applied to the delay after each retry (>= 1). */
  backoffCoefficient: number;
  /** Upper bound on the delay, in ms. */
  maxBackoffMs: number;
  /** Fraction in [0, 1] by which each delay is pseudo-randomly reduced. */
  jitter: number;
  /** TaskError.type values that fail the task at once. */
  nonRetryableErrorTypes: string[];
}

/** The daemon's built-in policy: 3 attempts, 1s doubling up to 100s, 20% jitter. */
export const DEFAULT_RETRY_POLICY: Readonly<ResolvedRetryPolicy> = Object.freeze({
  maxAttempts: 3,
  initialBackoffMs: 1_000,
  backoffCoefficient: 2,
  maxBackoffMs: 100_000,
  jitter: 0.2,
  nonRetryableErrorTypes: Object.freeze([]) as unknown as string[],
});

/**
 * A Duration in ms, rounding a positive sub-millisecond part up so that a set,
 * positive duration never becomes 0.
 */
export function durationToMs(d: Duration): number {
  return Number(d.seconds) * 1000 + Math.ceil(d.nanos / 1_000_000);
}

/**
 * Resolves a policy field by field: a field the task leaves unset (0, unset
 * Duration, unset jitter, empty list) falls back to the workflow default, then
 * to the daemon default.
 */
export function resolveRetryPolicy(
  task: RetryPolicy | undefined,
  workflow: RetryPolicy | undefined,
  daemonDefault: Readonly<ResolvedRetryPolicy>,
): ResolvedRetryPolicy {
  const pick = <T>(get: (p: RetryPolicy) => T | undefined, fallback: T): T => {
    const t = task === undefined ? undefined : get(task);
    if (t !== undefined) return t;
    const w = workflow === undefined ? undefined : get(workflow);
    return w !== undefined ? w : fallback;
  };
  const nonZero = (n: number) => (n === 0 ? undefined : n);
  const ms = (d: Duration | undefined) => (d === undefined ? undefined : durationToMs(d));
  return {
    maxAttempts: pick((p) => nonZero(p.maxAttempts), daemonDefault.maxAttempts),
    initialBackoffMs: pick((p) => ms(p.initialBackoff), daemonDefault.initialBackoffMs),
    backoffCoefficient: pick((p) => nonZero(p.backoffCoefficient), daemonDefault.backoffCoefficient),
    maxBackoffMs: pick((p) => ms(p.maxBackoff), daemonDefault.maxBackoffMs),
    jitter: pick((p) => p.jitter, daemonDefault.jitter),
    nonRetryableErrorTypes: [
      ...pick(
        (p) => (p.nonRetryableErrorTypes.length === 0 ? undefined : p.nonRetryableErrorTypes),
        daemonDefault.nonRetryableErrorTypes,
      ),
    ],
  };
}

/** The conventional seed of a retry delay: the same on every daemon replica. */
export function backoffSeed(runId: string, taskId: string, attempt: number): string {
  return `${runId}/${taskId}/${attempt}`;
}

const encoder = new TextEncoder();

/**
 * A deterministic number in [0, 1) from a string: 32-bit FNV-1a over its UTF-8
 * bytes, followed by the murmur3 finalizer so that similar seeds spread out.
 */
export function seededFraction(seed: string): number {
  let h = 0x811c9dc5;
  for (const byte of encoder.encode(seed)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 0x1_0000_0000;
}

/**
 * Delay in ms before the attempt after `attemptThatFailed` (1-based):
 * min(initial × coefficient^(n-1), max), reduced by up to the jitter fraction.
 * The reduction is derived from `seed` (see {@link backoffSeed}), so every
 * process computes the same delay for the same seed. The result is an integer
 * in [ceil(base × (1 - jitter)), base].
 */
export function backoffDelayMs(
  policy: Readonly<ResolvedRetryPolicy>,
  attemptThatFailed: number,
  seed: string,
): number {
  const n = Math.max(1, Math.floor(attemptThatFailed));
  const initial = Math.max(0, policy.initialBackoffMs);
  const cap = Math.max(0, policy.maxBackoffMs);
  if (initial === 0 || cap === 0) return 0;
  const coefficient = Math.max(1, policy.backoffCoefficient);
  const raw = initial * coefficient ** (n - 1); // may be Infinity; the cap applies
  const base = Math.floor(Math.min(raw, cap));
  const jitter = Math.min(1, Math.max(0, policy.jitter));
  if (jitter === 0 || base === 0) return base;
  return Math.min(base, Math.ceil(base * (1 - jitter * seededFraction(seed))));
}

/**
 * Whether a failed attempt (1-based) may be retried: the worker did not mark
 * the error final, its type is not listed as non-retryable, and attempts remain.
 */
export function isRetryable(
  policy: Readonly<ResolvedRetryPolicy>,
  errorType: string,
  retryableFlag: boolean,
  attempt: number,
): boolean {
  if (!retryableFlag) return false;
  if (errorType !== "" && policy.nonRetryableErrorTypes.includes(errorType)) return false;
  return attempt < policy.maxAttempts;
}
