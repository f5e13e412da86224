import { readFileSync } from "node:fs";

/** Resident set size of a process in bytes (VmRSS of /proc/<pid>/status); undefined once it is gone. */
export function readRss(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match === null ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** Samples a process's RSS periodically and keeps the peak. */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  private peakBytes = 0;
  private lastBytes = 0;

  constructor(
    readonly pid: number,
    private readonly intervalMs = 100,
  ) {}

  /** Starts (or restarts) sampling; resets the peak. */
  start(): this {
    this.stop();
    this.peakBytes = 0;
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  /** Stops sampling; returns the peak and the last sample in bytes. */
  stop(): { peak: number; last: number } {
    if (this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.sample();
    }
    return { peak: this.peakBytes, last: this.lastBytes };
  }

  /** Peak so far, in bytes. */
  get peak(): number {
    return this.peakBytes;
  }

  private sample(): void {
    const rss = readRss(this.pid);
    if (rss === undefined) return;
    this.lastBytes = rss;
    if (rss > this.peakBytes) this.peakBytes = rss;
  }
}

export const MiB = 1024 * 1024;
