import type { Redis } from "ioredis";
import type { Logger } from "pino";

/** A run event as stored in the run's stream. */
export interface StoredEvent {
  sequence: number;
  fields: Record<string, string>;
}

type Listener = (events: StoredEvent[]) => void;

interface Subscription {
  listeners: Set<Listener>;
  /** Highest sequence fetched for this run's listeners. */
  lastSequence: number;
  fetching: boolean;
  again: boolean;
}

/**
 * Fans one run's new events out to every watcher on this replica. A replica
 * holds one subscriber connection whatever the number of watchers; each
 * notification (the sequence published by a run step) triggers one XRANGE per
 * run, shared by all of that run's watchers.
 */
export class EventHub {
  private readonly runs = new Map<string, Subscription>();

  constructor(
    private readonly redis: Redis,
    private readonly subscriber: Redis,
    private readonly streamKey: (runId: string) => string,
    private readonly runOfChannel: (channel: string) => string | undefined,
    private readonly logger: Logger,
  ) {
    subscriber.on("message", (channel: string) => {
      const runId = this.runOfChannel(channel);
      if (runId !== undefined) this.fetch(runId);
    });
    // After a reconnect, notifications may have been missed: fetch every run.
    subscriber.on("ready", () => {
      for (const runId of this.runs.keys()) this.fetch(runId);
    });
  }

  /** Number of watched runs. */
  get size(): number {
    return this.runs.size;
  }

  /**
   * Calls `listener` with each batch of events after `afterSequence` as they
   * are appended; returns the unsubscribe function. Subscribes before reading
   * so that no event falls between history and live delivery.
   */
  async subscribe(runId: string, afterSequence: number, listener: Listener): Promise<() => void> {
    let sub = this.runs.get(runId);
    if (sub === undefined) {
      sub = { listeners: new Set(), lastSequence: afterSequence, fetching: false, again: false };
      this.runs.set(runId, sub);
      await this.subscriber.subscribe(this.streamKey(runId));
    }
    sub.listeners.add(listener);
    const current = sub;
    return () => {
      current.listeners.delete(listener);
      if (current.listeners.size === 0 && this.runs.get(runId) === current) {
        this.runs.delete(runId);
        this.subscriber.unsubscribe(this.streamKey(runId)).catch((err) => {
          this.logger.warn({ err, runId }, "unsubscribe failed");
        });
      }
    };
  }

  /** Reads a run's events after a sequence, up to `count`. */
  async read(runId: string, afterSequence: number, count: number): Promise<StoredEvent[]> {
    const entries = await this.redis.xrange(
      this.streamKey(runId),
      `(0-${afterSequence}`,
      "+",
      "COUNT",
      count,
    );
    return entries.map(([id, flat]) => {
      const fields: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
      return { sequence: Number(id.slice(2)), fields };
    });
  }

  private fetch(runId: string): void {
    const sub = this.runs.get(runId);
    if (sub === undefined) return;
    if (sub.fetching) {
      sub.again = true;
      return;
    }
    sub.fetching = true;
    void (async () => {
      try {
        do {
          sub.again = false;
          const events = await this.read(runId, sub.lastSequence, 1000);
          if (events.length === 0) continue;
          sub.lastSequence = events[events.length - 1]?.sequence ?? sub.lastSequence;
          if (events.length === 1000) sub.again = true;
          for (const listener of sub.listeners) listener(events);
        } while (sub.again);
      } catch (err) {
        this.logger.warn({ err, runId }, "reading run events failed");
      } finally {
        sub.fetching = false;
      }
    })();
  }
}
