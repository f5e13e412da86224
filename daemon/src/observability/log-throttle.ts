import type { Logger } from "pino";

/** Options of {@link LogThrottle}. */
export interface LogThrottleOptions {
  /**
   * A kind of line that keeps repeating is summarised this often, with its count.
   * @defaultValue 60000
   */
  summaryEveryMs?: number;
  /**
   * A kind of line not seen again for this long has stopped: its count is logged, and its next
   * occurrence is logged in full again. Longer than the longest backoff of the loops that log.
   * @defaultValue 30000
   */
  quietMs?: number;
  /**
   * The clock, in ms.
   * @defaultValue Date.now
   */
  now?: () => number;
}

/** Takes lines that an outage already reported explains (see RedisMonitor). */
export interface OutageSink {
  /** Counts `msg` and returns true when `err` is explained by the outage; returns false otherwise. */
  absorb(err: unknown, msg: string): boolean;
}

/** The fields of a throttled line; `err` decides its kind. */
export type ThrottledFields = { err?: unknown } & Record<string, unknown>;

type Level = "info" | "warn" | "error";

interface Repeats {
  level: Level;
  msg: string;
  kind: string;
  source: string | undefined;
  /** Occurrences not logged since `since`. */
  count: number;
  since: number;
  lastAt: number;
}

/**
 * Logs repeated warnings and errors once: the first of a kind (message, source and error kind)
 * in full, then, while it repeats, one line with its count every `summaryEveryMs` and one when it
 * stops (`{"msg":"BullMQ worker error","repeated":160,"sinceMs":41000}`). Lines an outage explains
 * (a Redis connection error while the RedisMonitor reports Redis down) are counted by the outage
 * instead, and reported with the line that says Redis is back.
 */
export class LogThrottle {
  private readonly repeats = new Map<string, Repeats>();
  private readonly summaryEveryMs: number;
  private readonly quietMs: number;
  private readonly now: () => number;
  private sweeper: NodeJS.Timeout | undefined;
  private outage: OutageSink | undefined;

  constructor(
    private readonly logger: Logger,
    options: LogThrottleOptions = {},
  ) {
    this.summaryEveryMs = options.summaryEveryMs ?? 60_000;
    this.quietMs = options.quietMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  /** Logs at info level, throttled (see {@link warn}). */
  info(fields: ThrottledFields, msg: string, source?: string): void {
    this.log("info", fields, msg, source);
  }

  /** Logs at warn level, throttled; `source` (a queue, a loop) keeps its lines apart from others'. */
  warn(fields: ThrottledFields, msg: string, source?: string): void {
    this.log("warn", fields, msg, source);
  }

  /** Logs at error level, throttled (see {@link warn}). */
  error(fields: ThrottledFields, msg: string, source?: string): void {
    this.log("error", fields, msg, source);
  }

  /** Hands lines with errors to `sink` first (undefined: none); one sink per throttle. */
  setOutageSink(sink: OutageSink | undefined): void {
    this.outage = sink;
  }

  /** Logs the counts of every kind still repeating (at shutdown) and forgets them. */
  flush(): void {
    for (const repeats of this.repeats.values()) this.summarise(repeats, this.now());
    this.repeats.clear();
    this.stopSweeper();
  }

  /** Ends the kinds that were quiet for `quietMs`, logging their counts; called by a timer. */
  sweep(): void {
    const now = this.now();
    for (const [key, repeats] of this.repeats) {
      if (now - repeats.lastAt < this.quietMs) continue;
      this.summarise(repeats, now);
      this.repeats.delete(key);
    }
    if (this.repeats.size === 0) this.stopSweeper();
  }

  private log(level: Level, fields: ThrottledFields, msg: string, source: string | undefined): void {
    if (fields.err !== undefined && this.outage?.absorb(fields.err, msg) === true) return;
    const kind = errorKind(fields.err);
    const key = `${level}\u0000${msg}\u0000${source ?? ""}\u0000${kind}`;
    const now = this.now();
    const repeats = this.repeats.get(key);
    if (repeats === undefined) {
      this.logger[level](fields, msg);
      this.repeats.set(key, { level, msg, kind, source, count: 0, since: now, lastAt: now });
      this.startSweeper();
      return;
    }
    repeats.count++;
    repeats.lastAt = now;
    if (now - repeats.since >= this.summaryEveryMs) {
      this.summarise(repeats, now);
      repeats.count = 0;
      repeats.since = now;
    }
  }

  private summarise(repeats: Repeats, now: number): void {
    if (repeats.count === 0) return;
    const fields: Record<string, unknown> = { repeated: repeats.count, sinceMs: now - repeats.since };
    if (repeats.kind !== "") fields.error = repeats.kind;
    if (repeats.source !== undefined) fields.source = repeats.source;
    this.logger[repeats.level](fields, repeats.msg);
  }

  private startSweeper(): void {
    if (this.sweeper !== undefined) return;
    this.sweeper = setInterval(() => this.sweep(), Math.min(this.quietMs, 1000));
    this.sweeper.unref();
  }

  private stopSweeper(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/**
 * What makes two errors "the same kind" for {@link LogThrottle}: the error code when it has one
 * (ECONNREFUSED), else its name and message with ids and numbers blanked out, so that
 * "Missing lock for job 5a01….t24" and "… job 7c27….t9" are one kind.
 */
export function errorKind(err: unknown): string {
  if (err === undefined) return "";
  if (!(err instanceof Error)) return typeof err;
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === "string" && code !== "") return code;
  const message = err.message.replace(UUID, "<id>").replace(/\d+/g, "#");
  return `${err.name}: ${message.slice(0, 120)}`;
}

const throttles = new WeakMap<Logger, LogThrottle>();

/**
 * The throttle of `logger`: one per logger instance, so that every module logging through the
 * daemon's logger shares the counts and the Redis outage (the RedisMonitor sets itself as its
 * sink). A child logger gets a throttle of its own.
 */
export function logThrottle(logger: Logger): LogThrottle {
  let throttle = throttles.get(logger);
  if (throttle === undefined) {
    throttle = new LogThrottle(logger);
    throttles.set(logger, throttle);
  }
  return throttle;
}
