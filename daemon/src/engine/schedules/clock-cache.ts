import { LruCache } from "../shared/index.js";
import { type ClockSpec, ScheduleClock } from "./clock.js";

/**
 * The clocks of the schedules this replica fires, by their spec: parsing a cron expression costs
 * about as much as computing ten fire times, and a schedule fires again and again.
 */
export class ClockCache {
  private readonly cache = new LruCache<string, ScheduleClock>({ maxEntries: 20_000 });

  /** The clock of a spec (stored specs are valid: this does not throw for them). */
  of(spec: ClockSpec): ScheduleClock {
    const key = `${spec.cron}\u0000${spec.timeZone}\u0000${spec.intervalMs}\u0000${spec.offsetMs}\u0000${spec.startMs}\u0000${spec.endMs}`;
    let clock = this.cache.get(key);
    if (clock === undefined) {
      clock = new ScheduleClock(spec);
      this.cache.set(key, clock);
    }
    return clock;
  }
}
