import { create, toBinary } from "@bufbuild/protobuf";
import { type WatchRunResponse, WatchRunResponseSchema } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import type { Logger } from "pino";
import { logThrottle } from "../../observability/log-throttle.js";
import type { ChannelSubscriber } from "../../redis/channel-subscriber.js";
import type { RedisClient } from "../../redis/redis.js";
import { envelope } from "../../server/response-stream.js";
import { eventFromStored, isFinalEvent, type StoredEvent } from "../runs/index.js";

/**
 * A run event as watch streams send it, built once per replica and shared by
 * every watcher of the run: nothing may modify it.
 */
export interface FeedEvent {
  readonly sequence: number;
  /** Whether it is the run's last event. */
  readonly final: boolean;
  /** What a watch stream's iterator returns for it. */
  readonly result: IteratorYieldResult<WatchRunResponse>;
  /** The response as one uncompressed binary envelope (gRPC, gRPC-Web and Connect frame it alike). */
  readonly frame: Uint8Array;
  /** Length of the stored entry's values, to bound what a feed keeps. */
  readonly size: number;
}

/** A watcher of a run: gets each batch of new events, in order, as the replica reads them. */
export interface FeedListener {
  offer(events: readonly FeedEvent[]): void;
}

/** Events kept in memory per watched run, for watchers that join or fall behind... */
const RECENT = 256;
/** ...as long as their stored values (outputs, errors) stay under this size. */
const RECENT_BYTES = 1024 * 1024;
/** Events read per LRANGE when new events are announced. */
const FETCH = 1000;

/** One watched run: its listeners and the window of its latest events. */
class RunFeed {
  readonly listeners = new Set<FeedListener>();
  /** The latest events, consecutive, the last one at `last`. */
  private recent: FeedEvent[] = [];
  /** Sum of their sizes. */
  private bytes = 0;
  /** Highest sequence read. */
  last = 0;
  fetching = true;
  again = false;
  /** Reads of new events that failed in a row (each retried after a longer pause). */
  failures = 0;
  /** Settles once the channel is subscribed and the window loaded. */
  ready: Promise<void> = Promise.resolve();

  /** Appends events read after `last`, keeping the window consecutive and bounded. */
  append(events: readonly FeedEvent[]): void {
    for (const e of events) {
      if (e.sequence !== this.last + 1) {
        this.recent = [];
        this.bytes = 0;
      }
      this.recent.push(e);
      this.bytes += e.size;
      this.last = e.sequence;
    }
    // Trimmed in steps rather than on every event.
    if (this.recent.length <= RECENT + RECENT / 4 && this.bytes <= RECENT_BYTES) return;
    let kept = 0;
    let bytes = 0;
    for (let i = this.recent.length - 1; i >= 0 && kept < RECENT; i--) {
      const size = (this.recent[i] as FeedEvent).size;
      if (bytes + size > RECENT_BYTES) break;
      bytes += size;
      kept++;
    }
    this.recent = this.recent.slice(this.recent.length - kept);
    this.bytes = bytes;
  }

  /** Sequence of the event before the window's first. */
  get before(): number {
    return this.last - this.recent.length;
  }

  /** Up to `count` events after `after` from the window; undefined when it starts later. */
  slice(after: number, count: number): FeedEvent[] | undefined {
    const from = after - this.before;
    return from < 0 ? undefined : this.recent.slice(from, from + count);
  }
}

/**
 * Fans run events out to every watcher on this replica. A replica holds one
 * subscriber connection whatever the number of watchers; each notification
 * (the sequence a run step publishes) triggers one LRANGE per run, and each
 * event is decoded and built into its response message once, whatever the
 * number of watchers of the run.
 */
export class EventHub {
  private readonly runs = new Map<string, RunFeed>();

  constructor(
    private readonly redis: RedisClient,
    private readonly subscriber: ChannelSubscriber,
    /** The key of a run's event list, also the channel its steps publish on. */
    private readonly logKey: (runId: string) => string,
    private readonly runOfChannel: (channel: string) => string | undefined,
    private readonly logger: Logger,
    /** Largest output an event carries; a larger one is left out of it and marked. */
    private readonly maxOutputBytes: number,
  ) {
    subscriber.onMessage((channel, message) => {
      const runId = this.runOfChannel(channel);
      if (runId === undefined) return;
      const feed = this.runs.get(runId);
      // The message is the run's last sequence ("12", or "12f" when the run finished): nothing to
      // read when the feed has it already.
      if (feed !== undefined && !(Number.parseInt(message, 10) <= feed.last)) this.fetch(runId, feed);
    });
    // After a reconnection or a failover, notifications may have been missed: once subscribed
    // again, fetch what the runs concerned appended meanwhile.
    subscriber.onResubscribed((channels) => {
      if (channels === "all") {
        for (const [runId, feed] of this.runs) this.fetch(runId, feed);
        return;
      }
      for (const channel of channels) {
        const runId = this.runOfChannel(channel);
        const feed = runId === undefined ? undefined : this.runs.get(runId);
        if (runId !== undefined && feed !== undefined) this.fetch(runId, feed);
      }
    });
  }

  /** Number of watched runs. */
  get size(): number {
    return this.runs.size;
  }

  /**
   * Adds a listener to the run's feed; resolves once the feed follows the
   * run's event list, with the function that removes the listener. From then on
   * the listener gets every event appended after the feed's `last`, so a
   * watcher that reads its history after joining misses nothing.
   */
  async join(runId: string, listener: FeedListener): Promise<() => void> {
    let feed = this.runs.get(runId);
    if (feed === undefined) {
      const created = new RunFeed();
      feed = created;
      this.runs.set(runId, created);
      // Every joiner awaits it, and the last one to leave a feed that failed to open removes it.
      created.ready = this.open(runId, created);
    }
    feed.listeners.add(listener);
    const current = feed;
    const leave = () => {
      current.listeners.delete(listener);
      if (current.listeners.size === 0 && this.runs.get(runId) === current) {
        this.runs.delete(runId);
        this.subscriber.unsubscribe(this.logKey(runId));
      }
    };
    try {
      await current.ready;
    } catch (err) {
      leave();
      throw err;
    }
    return leave;
  }

  /**
   * Up to `count` events after `after`, for a listener of the run: what
   * precedes the feed's window from Redis, the rest from the window. Fewer
   * than `count` means that the listener has all the feed has read; it is
   * offered what follows.
   */
  async history(runId: string, after: number, count: number): Promise<FeedEvent[]> {
    const events: FeedEvent[] = [];
    for (;;) {
      const cursor = events[events.length - 1]?.sequence ?? after;
      const want = count - events.length;
      const feed = this.runs.get(runId);
      const cached = feed?.slice(cursor, want);
      if (cached !== undefined) return events.concat(cached);
      const page = await this.read(runId, cursor, want, feed?.before);
      events.push(...page);
      // Short of the window's start only when the list lost entries (the run expired).
      if (page.length === want || page.length === 0 || feed === undefined) return events;
    }
  }

  /** Reads up to `count` of a run's events after a sequence (up to `until`) from Redis. */
  async read(runId: string, after: number, count: number, until?: number): Promise<FeedEvent[]> {
    // The event of sequence s is at index s - 1.
    const last = Math.min(after + count, until ?? Number.POSITIVE_INFINITY);
    if (last <= after) return [];
    const entries = await this.redis.lrange(this.logKey(runId), after, last - 1);
    return entries.map((entry) => feedEvent(runId, entry, this.maxOutputBytes));
  }

  /** Subscribes to the run's channel, then loads its latest events. */
  private async open(runId: string, feed: RunFeed): Promise<void> {
    try {
      await this.subscriber.subscribe(this.logKey(runId));
      // Everything appended from now on is announced; the window holds what came before.
      const latest = await this.redis.lrange(this.logKey(runId), -RECENT, -1);
      feed.append(latest.map((entry) => feedEvent(runId, entry, this.maxOutputBytes)));
    } finally {
      feed.fetching = false;
    }
    if (feed.again) this.fetch(runId, feed);
  }

  private fetch(runId: string, feed: RunFeed): void {
    if (feed.fetching) {
      feed.again = true;
      return;
    }
    feed.fetching = true;
    void (async () => {
      try {
        do {
          feed.again = false;
          const events = await this.read(runId, feed.last, FETCH);
          if (this.runs.get(runId) !== feed || events.length === 0) continue;
          feed.append(events);
          if (events.length === FETCH) feed.again = true;
          for (const listener of feed.listeners) listener.offer(events);
        } while (feed.again && this.runs.get(runId) === feed);
        feed.failures = 0;
      } catch (err) {
        // No notification may come again (the run's last event was the one announced): read again,
        // later and later, for as long as someone watches the run.
        feed.failures++;
        logThrottle(this.logger).warn({ err, runId }, "reading run events failed");
        const retry = setTimeout(
          () => {
            if (this.runs.get(runId) === feed) this.fetch(runId, feed);
          },
          Math.min(100 * 2 ** feed.failures, 5000),
        );
        retry.unref();
      } finally {
        feed.fetching = false;
      }
    })();
  }
}

/** Builds the shared form of one list entry: the JSON array [sequence, time, field, value...]. */
export function feedEvent(runId: string, entry: string, maxOutputBytes: number): FeedEvent {
  const flat = JSON.parse(entry) as (string | number)[];
  const fields: Record<string, string> = { ts: String(flat[1]) };
  let size = 0;
  for (let i = 2; i + 1 < flat.length; i += 2) {
    const v = String(flat[i + 1]);
    fields[flat[i] as string] = v;
    size += v.length;
  }
  const stored: StoredEvent = { sequence: Number(flat[0]), fields };
  const value = create(WatchRunResponseSchema, { event: eventFromStored(runId, stored, maxOutputBytes) });
  return new SharedEvent(stored.sequence, isFinalEvent(stored), { done: false, value }, size);
}

class SharedEvent implements FeedEvent {
  private framed: Uint8Array | undefined;

  constructor(
    readonly sequence: number,
    readonly final: boolean,
    readonly result: IteratorYieldResult<WatchRunResponse>,
    readonly size: number,
  ) {}

  /** Encoded on first use, then shared by every stream that writes frames. */
  get frame(): Uint8Array {
    if (this.framed === undefined) {
      this.framed = envelope(toBinary(WatchRunResponseSchema, this.result.value));
    }
    return this.framed;
  }
}
