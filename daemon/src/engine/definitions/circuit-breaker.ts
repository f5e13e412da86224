import type { Duration } from "@bufbuild/protobuf/wkt";
import type { CircuitBreaker } from "@weft/sdk/gen/weft/v1/circuit_breaker_pb.js";
import type { Violation } from "../shared/index.js";
import { durationToMs } from "./retry-policy.js";

/** A circuit breaker's settings with every default applied (see weft.v1.CircuitBreaker). */
export interface CircuitSettings {
  /** One circuit per handler of the queue, or one for the whole queue. */
  perHandler: boolean;
  /** Failures within the window that open the circuit. */
  failureThreshold: number;
  /** Length of the sliding window failures are counted in, ms. */
  windowMs: number;
  /** How long the circuit stays open before it lets probes through, ms. */
  openMs: number;
  /** Tasks a half-open circuit lets start. */
  halfOpenProbes: number;
}

/** Defaults of the fields a CircuitBreaker leaves unset. */
export const CIRCUIT_DEFAULTS: Readonly<CircuitSettings> = Object.freeze({
  perHandler: false,
  failureThreshold: 5,
  windowMs: 60_000,
  openMs: 30_000,
  halfOpenProbes: 1,
});

/** Largest threshold and probe count, and longest window or open duration (30 days). */
const MAX_COUNT = 1_000_000;
const MAX_MS = 30 * 24 * 3600 * 1000;

function durationProblem(d: Duration | undefined): string | undefined {
  if (d === undefined) return undefined;
  if (d.seconds < 0n || d.nanos < 0 || d.nanos > 999_999_999) return "is not a valid duration";
  const ms = durationToMs(d);
  if (ms < 1) return "must be at least 1ms";
  if (ms > MAX_MS) return "must be at most 30 days";
  return undefined;
}

/** What is wrong with a CircuitBreaker message, each problem named by its field under `path`. */
export function circuitBreakerProblems(path: string, cb: CircuitBreaker): Violation[] {
  const out: Violation[] = [];
  const count = (name: string, n: number) => {
    if (!Number.isInteger(n) || n < 0 || n > MAX_COUNT)
      out.push({ field: `${path}.${name}`, description: `must be between 0 (the default) and ${MAX_COUNT}` });
  };
  count("failure_threshold", cb.failureThreshold);
  count("half_open_probes", cb.halfOpenProbes);
  for (const [name, d] of [
    ["window", cb.window],
    ["open_duration", cb.openDuration],
  ] as const) {
    const problem = durationProblem(d);
    if (problem !== undefined) out.push({ field: `${path}.${name}`, description: problem });
  }
  return out;
}

/** A checked CircuitBreaker message with its defaults applied. */
export function resolveCircuitBreaker(cb: CircuitBreaker): CircuitSettings {
  return {
    perHandler: cb.perHandler,
    failureThreshold: cb.failureThreshold || CIRCUIT_DEFAULTS.failureThreshold,
    windowMs: cb.window === undefined ? CIRCUIT_DEFAULTS.windowMs : durationToMs(cb.window),
    openMs: cb.openDuration === undefined ? CIRCUIT_DEFAULTS.openMs : durationToMs(cb.openDuration),
    halfOpenProbes: cb.halfOpenProbes || CIRCUIT_DEFAULTS.halfOpenProbes,
  };
}
