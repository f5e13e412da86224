import type { Logger } from "pino";
import { Backoff, sleep } from "./backoff.js";
import type { DaemonHealth } from "./daemon-health.js";
import { isLeaseLost, isTransient, rpcErrorFields } from "./rpc-errors.js";

/** Per-call timeout of CompleteTask and FailTask. */
const reportTimeoutMs = 10_000;

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
 * Delivers a task's result with `call`, retrying while the daemon is unavailable (the daemon
 * deduplicates by lease, so a repeat is harmless). Never rejects: an undeliverable result is logged
 * and its lease expires on the daemon.
 */
export async function report(
  rpc: "CompleteTask" | "FailTask",
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
      if (isLeaseLost(err)) {
        policy.logger.warn({ rpc, ...rpcErrorFields(err) }, "lease lost; the result was not recorded");
        return;
      }
      if (!isTransient(err) || attempt >= policy.attempts || policy.signal.aborted) {
        policy.logger.error(
          { rpc, attempts: attempt, ...rpcErrorFields(err) },
          `${rpc} failed; the result was not recorded and the lease will expire on the daemon`,
        );
        return;
      }
      policy.health.failed(rpc, err);
      await sleep(backoff.next(), policy.signal);
      if (policy.signal.aborted) {
        return;
      }
    }
  }
}
