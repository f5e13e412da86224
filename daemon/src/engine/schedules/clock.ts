import { createHash } from "node:crypto";
import { Cron } from "croner";

/** When a schedule fires: a cron expression in a time zone, or a fixed interval; within start and end. */
export interface ClockSpec {
  /** Cron expression (5 or 6 fields, or a nickname); "" for an interval clock. */
  cron: string;
  /** IANA time zone of the cron expression. */
  timeZone: string;
  /** Interval between fire times, in ms; 0 for a cron clock. */
  intervalMs: number;
  /** Offset of the interval's fire times from the Unix epoch's multiples, in ms. */
  offsetMs: number;
  /** No fire time before this (ms since the epoch); 0 for none. */
  startMs: number;
  /** No fire time after this (ms since the epoch); 0 for none. */
  endMs: number;
}

/** Time zones whose clock never moves: croner's fixed-offset path computes them ten times faster. */
const UTC_NAMES = new Set([
  "UTC",
  "Etc/UTC",
  "Etc/GMT",
  "GMT",
  "Etc/Universal",
  "Etc/Zulu",
  "Universal",
  "Zulu",
]);

/**
 * The fire times of a schedule. Cron expressions are croner's (Vixie cron's rules, seconds
 * optional): a fixed time that a daylight-saving change skips fires once, at the first valid time
 * after the gap; one that occurs twice fires once, at its first occurrence; expressions with a
 * wildcard, step, range or list in their second, minute or hour fields fire on both occurrences of a
 * repeated hour and skip the times of a gap (see croner's README). Interval fire times are
 * `k × interval + offset` since the Unix epoch.
 */
export class ScheduleClock {
  private readonly cron: Cron | undefined;

  /** @throws Error with croner's message when the expression or the time zone is invalid. */
  constructor(readonly spec: ClockSpec) {
    if (spec.cron !== "") {
      this.cron = new Cron(spec.cron, {
        paused: true,
        mode: "5-or-6-parts",
        ...(UTC_NAMES.has(spec.timeZone) ? { utcOffset: 0 } : { timezone: spec.timeZone }),
      });
    }
  }

  /** The first fire time strictly after `afterMs`, within start and end; undefined when there is none. */
  next(afterMs: number): number | undefined {
    const { spec } = this;
    const from = spec.startMs > 0 ? Math.max(afterMs, spec.startMs - 1) : afterMs;
    let t: number | undefined;
    if (this.cron !== undefined) {
      t = this.cron.nextRun(new Date(from))?.getTime();
    } else {
      const k = Math.floor((from - spec.offsetMs) / spec.intervalMs) + 1;
      t = k * spec.intervalMs + spec.offsetMs;
    }
    if (t === undefined || !Number.isFinite(t) || (spec.endMs > 0 && t > spec.endMs)) return undefined;
    return t;
  }

  /** Up to `limit` fire times after `afterMs` and at most `untilMs`, in order. */
  between(afterMs: number, untilMs: number, limit: number): number[] {
    const out: number[] = [];
    let t = this.next(afterMs);
    while (t !== undefined && t <= untilMs && out.length < limit) {
      out.push(t);
      t = this.next(t);
    }
    return out;
  }

  /** The latest `n` fire times in [fromMs, untilMs] (within start and end), in order. */
  latest(n: number, fromMs: number, untilMs: number): number[] {
    const { spec } = this;
    const until = spec.endMs > 0 ? Math.min(untilMs, spec.endMs) : untilMs;
    const from = Math.max(fromMs, spec.startMs);
    if (until < from || n <= 0) return [];
    const times: number[] = [];
    if (this.cron !== undefined) {
      // previousRuns leaves out its reference's own second: refer to the second after `until`.
      const ref = new Date(Math.floor(until / 1000) * 1000 + 1000);
      for (const d of this.cron.previousRuns(n, ref)) {
        const t = d.getTime();
        if (t >= from && t <= until) times.unshift(t);
      }
      return times;
    }
    for (let k = Math.floor((until - spec.offsetMs) / spec.intervalMs); times.length < n; k--) {
      const t = k * spec.intervalMs + spec.offsetMs;
      if (t < from) break;
      times.unshift(t);
    }
    return times;
  }

  /**
   * How many fire times lie in [from, before), `from` being one: counted up to `chunk` for a cron
   * clock (then `resumeAt` is the next one, still before `before`), computed for an interval clock.
   */
  count(from: number, before: number, chunk: number): { count: number; resumeAt?: number } {
    if (from >= before) return { count: 0 };
    if (this.cron === undefined) {
      const last = this.spec.endMs > 0 ? Math.min(before - 1, this.spec.endMs) : before - 1;
      return { count: last < from ? 0 : Math.floor((last - from) / this.spec.intervalMs) + 1 };
    }
    let n = 1;
    let t = from;
    for (;;) {
      const next = this.next(t);
      if (next === undefined || next >= before) return { count: n };
      if (n === chunk) return { count: n, resumeAt: next };
      t = next;
      n++;
    }
  }
}

/**
 * How long after its fire time a schedule's fire starts, under a jitter of `jitterMs`: fixed per
 * schedule and fire time (every replica computes the same), spread evenly over [0, jitterMs).
 */
export function jitterOf(scheduleId: string, fireTime: number, jitterMs: number): number {
  if (jitterMs <= 0) return 0;
  const digest = createHash("sha256").update(`${scheduleId}\u0000${fireTime}`).digest();
  return digest.readUInt32BE(0) % jitterMs;
}

/** Whether the runtime knows an IANA time zone name. */
export function isTimeZone(name: string): boolean {
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$/.test(name)) return false;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}
