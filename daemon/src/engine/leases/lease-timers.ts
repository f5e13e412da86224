/**
 * What a lease timer does when it fires: the deadline to wait for next (the lease was extended),
 * or undefined when the lease needs no more watching (it ended, or was ended now).
 */
export type LeaseDue = () => Promise<number | undefined>;

/** Longest pause before a timer whose check failed (Redis away) tries again. */
const MAX_RETRY_MS = 5000;

interface Armed {
  at: number;
  timer: NodeJS.Timeout;
  due: LeaseDue;
  failures: number;
}

/**
 * In-process timers at the deadlines of the leases this replica handed out or extended, so that
 * a heartbeat or start-to-close timeout is noticed when it expires rather than at the next check
 * for expired BullMQ locks. A timer that fires asks `due` whether the lease really expired (a
 * heartbeat on another replica may have extended it) and waits for the new deadline if not. They
 * are an accelerator: when the replica dies, its timers go with it and the stalled-job check of
 * any replica ends those leases instead, a lock's length later.
 */
export class LeaseTimers {
  private readonly armed = new Map<string, Armed>();
  private closed = false;

  /** How many leases are watched. */
  get size(): number {
    return this.armed.size;
  }

  /** Watches the lease `key` until `at` (epoch ms); replaces an earlier watch of the same key. */
  arm(key: string, at: number, due: LeaseDue): void {
    if (this.closed) return;
    const current = this.armed.get(key);
    if (current !== undefined) {
      // An earlier timer reads the lease's deadline when it fires and waits on: it stands.
      if (current.at <= at) return;
      clearTimeout(current.timer);
    }
    const entry: Armed = { at, due, failures: 0, timer: this.schedule(key, at) };
    this.armed.set(key, entry);
  }

  /** Stops watching `key` (its lease ended on this replica). */
  disarm(key: string): void {
    const entry = this.armed.get(key);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    this.armed.delete(key);
  }

  /** Stops every timer. */
  close(): void {
    this.closed = true;
    for (const entry of this.armed.values()) clearTimeout(entry.timer);
    this.armed.clear();
  }

  private schedule(key: string, at: number): NodeJS.Timeout {
    const timer = setTimeout(() => void this.fire(key), Math.max(0, at - Date.now()));
    timer.unref();
    return timer;
  }

  private async fire(key: string): Promise<void> {
    const entry = this.armed.get(key);
    if (entry === undefined) return;
    let next: number | undefined;
    try {
      next = await entry.due();
      entry.failures = 0;
    } catch {
      // Redis away: look again, later and later, until the lease can be judged.
      entry.failures++;
      next = Date.now() + Math.min(100 * 2 ** entry.failures, MAX_RETRY_MS);
    }
    // Re-armed or disarmed meanwhile: that watch stands.
    if (this.armed.get(key) !== entry || this.closed) return;
    if (next === undefined) {
      this.armed.delete(key);
      return;
    }
    entry.at = next;
    entry.timer = this.schedule(key, next);
  }
}
