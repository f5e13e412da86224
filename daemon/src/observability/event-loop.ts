import { type IntervalHistogram, monitorEventLoopDelay, performance } from "node:perf_hooks";

/** Options of {@link EventLoopWatch}. */
export interface EventLoopWatchOptions {
  /**
   * How often the watch's timer should fire; its lateness is the time the loop was blocked.
   * @defaultValue 100
   */
  tickMs?: number;
  /** Called with the length of a single stall at least `stallMs` long. */
  onStall?: (ms: number) => void;
  /**
   * See `onStall`.
   * @defaultValue 1000
   */
  stallMs?: number;
}

/**
 * Measures how long this process's event loop was blocked (a busy CPU, a long GC pause, the
 * process stopped): a timer that should fire every `tickMs` adds up how late it fires. Timeouts
 * that judge a peer (a Redis PING) discount that time, so that weftd's own slowness is not taken
 * for the peer's. Also keeps libuv's histogram of loop delays for the metrics.
 */
export class EventLoopWatch {
  private blocked = 0;
  private last = performance.now();
  private readonly tickMs: number;
  private readonly stallMs: number;
  private readonly onStall: ((ms: number) => void) | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly histogram: IntervalHistogram;

  constructor(options: EventLoopWatchOptions = {}) {
    this.tickMs = options.tickMs ?? 100;
    this.stallMs = options.stallMs ?? 1000;
    this.onStall = options.onStall;
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
    this.histogram = monitorEventLoopDelay({ resolution: 10 });
    this.histogram.enable();
  }

  /** Milliseconds the loop has been blocked since the watch started, the stall going on now included. */
  blockedMs(): number {
    return this.blocked + this.lateness(performance.now());
  }

  /**
   * Loop delays since the previous call, in seconds, by quantile label ("0.5", "0.99", "1" for the
   * largest); the histogram starts afresh after each call (each scrape).
   */
  takeDelays(): Map<string, number> {
    const h = this.histogram;
    // The histogram is in nanoseconds; with no sample yet its max is 0 and its quantiles NaN-free 0.
    const seconds = (ns: number) => (h.count === 0 ? 0 : ns / 1e9);
    const delays = new Map([
      ['quantile="0.5"', seconds(h.percentile(50))],
      ['quantile="0.99"', seconds(h.percentile(99))],
      ['quantile="1"', seconds(h.max)],
    ]);
    h.reset();
    return delays;
  }

  /** Stops measuring. */
  stop(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }

  private lateness(now: number): number {
    return Math.max(0, now - this.last - this.tickMs);
  }

  private tick(): void {
    const now = performance.now();
    const late = this.lateness(now);
    this.blocked += late;
    this.last = now;
    if (late >= this.stallMs) this.onStall?.(Math.round(late));
  }
}

/**
 * Calls `onLate(wallMs, blockedMs)` once `budgetMs` of responsive time has passed — wall time
 * minus the time `loop` was blocked — unless the returned function is called first. Each verdict
 * waits for the I/O phase: a reply that arrived while the loop was blocked is read before it.
 */
export function afterResponsiveTime(
  loop: EventLoopWatch,
  budgetMs: number,
  onLate: (wallMs: number, blockedMs: number) => void,
): () => void {
  const start = performance.now();
  const blockedAtStart = loop.blockedMs();
  let done = false;
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  const check = () => {
    immediate = setImmediate(() => {
      if (done) return;
      const wall = performance.now() - start;
      const blocked = loop.blockedMs() - blockedAtStart;
      if (wall - blocked >= budgetMs) {
        done = true;
        onLate(Math.round(wall), Math.round(blocked));
        return;
      }
      timer = setTimeout(check, budgetMs - (wall - blocked)).unref();
    });
  };
  timer = setTimeout(check, budgetMs).unref();
  return () => {
    done = true;
    clearTimeout(timer);
    clearImmediate(immediate);
  };
}
