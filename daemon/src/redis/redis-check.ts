import type { Logger } from "pino";
import { ConfigError } from "../config.js";
import { probeRedis } from "./redis-probe.js";
import type { RedisTarget } from "./redis-target.js";

/** How long one probe waits for a server. */
const PROBE_TIMEOUT_MS = 2000;

/** Pauses between probes while Redis does not answer: 1 s doubling up to 10 s. */
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 10_000;

/**
 * Checks that the Redis weftd was given is what its URL says (see probeRedis) before weftd uses it:
 * at startup, and, when Redis did not answer then, in the background until it does. A mismatch
 * refuses to start (ConfigError from {@link first}) or, found later, is handed to `onRefused`.
 */
export class RedisCheck {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly target: RedisTarget,
    /** The URL without passwords, for logs. */
    private readonly redacted: string,
    private readonly logger: Logger,
    private readonly onRefused: (err: ConfigError) => void,
  ) {}

  /** The first check: throws the refusal; when Redis does not answer, checks again later. */
  async first(): Promise<void> {
    const settled = await this.probe();
    if (settled instanceof ConfigError) throw settled;
    if (!settled) this.later(FIRST_RETRY_MS);
  }

  /** Stops checking. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** One probe: the refusal, true when checked, false when no server answered. */
  private async probe(): Promise<ConfigError | boolean> {
    const verdict = await probeRedis(this.target, PROBE_TIMEOUT_MS);
    if (verdict === undefined) return false;
    if (verdict.refusal !== undefined) return new ConfigError(verdict.refusal);
    for (const warning of verdict.warnings) this.logger.warn({ redis: this.redacted }, warning);
    if (verdict.facts !== undefined) {
      this.logger.info(
        {
          redis: this.redacted,
          mode: verdict.facts.mode,
          version: verdict.facts.version,
          aof: verdict.facts.aof,
        },
        "redis checked",
      );
    }
    return true;
  }

  private later(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.probe().then(
        (settled) => {
          if (this.stopped) return;
          if (settled instanceof ConfigError) this.onRefused(settled);
          else if (!settled) this.later(Math.min(ms * 2, MAX_RETRY_MS));
        },
        () => this.later(Math.min(ms * 2, MAX_RETRY_MS)),
      );
    }, ms);
    this.timer.unref();
  }
}
