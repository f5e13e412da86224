/** Options of {@link BackoffLoop}. */
export interface BackoffLoopOptions {
  /** Pause between two runs that succeeded, in ms. */
  everyMs: number;
  /** Longest pause after failures, in ms: the pause doubles with each failure in a row up to it. */
  maxMs: number;
  /** Called with each failure and the pause before the next run. */
  onError: (err: unknown, retryInMs: number) => void;
}

/**
 * Runs `work` again and again, one run at a time, `everyMs` apart; after a failure it waits twice
 * as long each time, up to `maxMs`, so that a loop that talks to Redis neither spins nor floods
 * the log while Redis is down, and a run that hangs (a command waiting for Redis to come back)
 * is never overlapped by the next.
 */
export class BackoffLoop {
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = true;

  constructor(
    private readonly work: () => Promise<unknown>,
    private readonly options: BackoffLoopOptions,
  ) {}

  /** The pause after `failures` failures in a row. */
  static pause(everyMs: number, maxMs: number, failures: number): number {
    if (failures === 0) return everyMs;
    return Math.min(everyMs * 2 ** failures, Math.max(everyMs, maxMs));
  }

  /** Starts the loop; the first run comes after `everyMs`. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(this.options.everyMs);
  }

  /** Stops the loop; a run under way finishes, and no other starts. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => void this.run(), ms);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    try {
      await this.work();
      this.failures = 0;
    } catch (err) {
      this.failures++;
      this.options.onError(err, BackoffLoop.pause(this.options.everyMs, this.options.maxMs, this.failures));
    }
    if (!this.stopped)
      this.schedule(BackoffLoop.pause(this.options.everyMs, this.options.maxMs, this.failures));
  }
}
