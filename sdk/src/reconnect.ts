import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ReconnectOptions } from "./client-options.js";

/**
 * Codes after which the same call may well succeed: the daemon went away, restarted or shut down,
 * or the connection broke. Anything else (NOT_FOUND, INVALID_ARGUMENT, auth) is final.
 */
const TRANSIENT = new Set([
  Code.Unavailable,
  Code.Aborted,
  Code.Internal,
  Code.Unknown,
  Code.Canceled,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
]);

/** Whether a call that failed with `error` is worth repeating. */
export function isTransient(error: ConnectError): boolean {
  return TRANSIENT.has(error.code);
}

/** Delay before reconnection number `failures` (1-based): doubling from the initial delay, capped. */
export function backoffDelay(failures: number, policy: Required<ReconnectOptions>): number {
  return Math.min(policy.initialDelayMs * 2 ** (failures - 1), policy.maxDelayMs);
}

/**
 * Calls `fn` until it succeeds, repeating it after transient failures with capped backoff, at most
 * `policy.maxAttempts` times more. Rethrows a final error, or the last one.
 */
export async function retryTransient<T>(
  fn: () => Promise<T>,
  policy: Required<ReconnectOptions>,
  signal?: AbortSignal,
): Promise<T> {
  for (let failures = 1; ; failures++) {
    try {
      return await fn();
    } catch (err) {
      signal?.throwIfAborted();
      const error = ConnectError.from(err);
      if (!isTransient(error) || failures > policy.maxAttempts) throw err;
    }
    await sleep(backoffDelay(failures, policy), undefined, { signal });
  }
}
