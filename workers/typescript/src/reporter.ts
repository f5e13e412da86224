import type { Logger } from "pino";
import { Backoff, sleep } from "./backoff.js";
import type { DaemonHealth } from "./daemon-health.js";
import { isLeaseLost, isTransient, rpcErrorFields } from "./rpc-errors.js";

/** Per-call timeout of CompleteTask, CompleteTasks and FailTask. */
export const reportTimeoutMs = 10_000;

/** The RPCs that deliver a task's result. */
export type ReportRpc = "CompleteTask" | "CompleteTasks" | "FailTask";

/** How a result is delivered. */
export interface ReportPolicy {
  logger: Logger;
  health: DaemonHealth;
  attempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
  /** Stops retrying when aborted (the task was abandoned). */
  signal: AbortSignal;
}

/**
 * Decides what follows attempt number `attempt` of delivering a result that failed with `err`:
 * true when it is worth repeating after a backoff (the daemon deduplicates by lease, so a repeat
 * is harmless); otherwise logs why the result was not recorded (its lease expires on the daemon).
 */
export function shouldRetryReport(
  rpc: ReportRpc,
  err: unknown,
  attempt: number,
  policy: ReportPolicy,
): boolean {
  if (isLeaseLost(err)) {
    policy.logger.warn({ rpc, ...rpcErrorFields(err) }, "lease lost; the result was not recorded");
    return false;
  }
  if (!isTransient(err) || attempt >= policy.attempts || policy.signal.aborted) {
    policy.logger.error(
      { rpc, attempts: attempt, ...rpcErrorFields(err) },
      `${rpc} failed; the result was not recorded and the lease will expire on the daemon`,
    );
    return false;
  }
  policy.health.failed(rpc, err);
  return true;
}

/**
 * Delivers a task's result with `call`, retrying while the daemon is unavailable. Never rejects: an
 * undeliverable result is logged and its lease expires on the daemon.
 */
export async function report(
  rpc: ReportRpc,
  call: (options: { timeoutMs: number }) => Promise<unknown>,
  policy: ReportPolicy,
): Promise<void> {
  const backoff = new Backoff(policy.initialDelayMs, policy.maxDelayMs);
  for (let attempt = 1; ; attempt++) {
    try {
      await call({ timeoutMs: reportTimeoutMs });
      policy.health.ok();
      return;
    } catch (err) {
      if (!shouldRetryReport(rpc, err, attempt, policy)) {
        return;
      }
      await sleep(backoff.next(), policy.signal);
      if (policy.signal.aborted) {
        return;
      }
    }
  }
}
