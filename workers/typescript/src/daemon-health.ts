import type { Logger } from "pino";
import { isTransient, rpcErrorFields } from "./rpc-errors.js";

/**
 * Tracks whether the daemon answers, shared by every loop of a worker, so that an outage logs one
 * warn line when it starts and one info line when it ends instead of a line per attempt.
 */
export class DaemonHealth {
  private downSince: number | undefined;
  private lastProblem: string | undefined;

  constructor(private readonly logger: Logger) {}

  /** Records a successful call. */
  ok(): void {
    if (this.downSince !== undefined) {
      this.logger.info({ downForMs: Date.now() - this.downSince }, "daemon reachable again");
    }
    this.downSince = undefined;
    this.lastProblem = undefined;
  }

  /** Records a failed call of `rpc`; the caller backs off. */
  failed(rpc: string, err: unknown): void {
    const fields = { rpc, ...rpcErrorFields(err) };
    if (isTransient(err)) {
      if (this.downSince === undefined) {
        this.downSince = Date.now();
        this.logger.warn(fields, "daemon unavailable; retrying with backoff");
      } else {
        this.logger.debug(fields, "daemon still unavailable");
      }
      return;
    }
    // A non-transient error (a bad queue name, a rejected token) repeats on every attempt: log it
    // when it first appears or changes.
    const problem = `${rpc} ${fields.code} ${fields.error}`;
    if (problem !== this.lastProblem) {
      this.lastProblem = problem;
      this.logger.error(fields, `${rpc} failed; retrying with backoff`);
    } else {
      this.logger.debug(fields, `${rpc} failed again`);
    }
  }
}
