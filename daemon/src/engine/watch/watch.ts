import type { Writable } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import type { WatchRunResponse } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { isRedisUnavailableError, type RedisClient } from "../../redis/redis.js";
import { checkRunId, isFinalRunStatus, notFound } from "../runs/index.js";
import type { Keys } from "../shared/index.js";
import type { EventHub, FeedEvent, FeedListener } from "./event-hub.js";
import type { FinishHub } from "./finish-hub.js";
import { RunsWatch, type RunsWatchLimits } from "./runs-watch.js";

/** Events read from the run's history at a time. */
const PAGE = 500;
/**
 * Events a stream holds for a client that reads slower than the run moves; past it the stream
 * stops taking live events and reads the rest from the run's history once the client catches up.
 */
const MAX_QUEUED = 1000;

/** Tries of a read while Redis is unreachable (about 20 s in all) before the stream ends UNAVAILABLE. */
const MAX_UNREACHABLE = 8;

const END: IteratorReturnResult<undefined> = { done: true, value: undefined };

/** What watch streams read from: the run's hash, and its events through the replica's hubs. */
export interface WatchDeps {
  redis: RedisClient;
  keys: Keys;
  hub: EventHub;
  /** Runs' ends, by workflow channel (WatchRuns streams). */
  finishes: FinishHub;
}

/**
 * WatchRun streams (history first, then live events, until the run is final and the last event
 * sent is its RUN_FINISHED: a run resumed after it finished carries on past that event) and WatchRuns
 * streams (many runs and workflows on one stream, see runs-watch.ts).
 */
export class Watches {
  private active = 0;

  constructor(
    private readonly deps: WatchDeps,
    /** Most concurrent streams on this replica (of both kinds); one more is refused with RESOURCE_EXHAUSTED. */
    private readonly maxWatchers: number,
    /** The bounds of each WatchRuns stream. */
    private readonly manyLimits: RunsWatchLimits,
  ) {}

  /**
   * A WatchRuns stream's state, counted among the replica's watchers until `release` is called
   * (once). `onOutput` is called whenever something waits to be sent or the stream failed.
   */
  watchMany(onOutput: () => void): { watch: RunsWatch; release: () => void } {
    this.acquire();
    const watch = new RunsWatch(this.deps, this.manyLimits, onOutput);
    let released = false;
    return {
      watch,
      release: () => {
        if (released) return;
        released = true;
        watch.close();
        this.active--;
      },
    };
  }

  private acquire(): void {
    const limit = this.maxWatchers;
    if (this.active >= limit) {
      throw new ConnectError(
        `this replica already serves ${this.active} watchers (limit ${limit})`,
        Code.ResourceExhausted,
      );
    }
    this.active++;
  }

  /** Number of open watch streams on this replica. */
  get count(): number {
    return this.active;
  }

  /**
   * The run's events with a sequence above `afterSequence`, in order, without
   * gaps or duplicates, ending after a RUN_FINISHED that is the run's last event. Aborting `signal` ends
   * the stream with the signal's reason and frees everything it holds; any
   * error the stream ends with goes through `mapError` first.
   *
   * With a `sink` (the call's HTTP/2 stream, when the response is binary), the
   * iterator returns the first event only: once its caller asks for the next
   * one, the response headers and that first message are on the stream, and
   * every later event is written there as a ready-made envelope, shared by all
   * of the run's watchers, instead of passing through the RPC framework's
   * per-message pipeline. The pending next() then settles when the stream ends,
   * so that the framework writes the status and trailers as usual.
   */
  watch(
    runId: string,
    afterSequence: number,
    signal: AbortSignal,
    mapError: (err: unknown) => unknown = (err) => err,
    sink?: Writable,
  ): AsyncIterableIterator<WatchRunResponse> {
    return new RunWatch(this.deps, runId, afterSequence, signal, mapError, sink, {
      acquire: () => this.acquire(),
      release: () => {
        this.active--;
      },
    });
  }
}

/**
 * One watch stream, as an iterator rather than an async generator: a live
 * event costs a push or a resolved promise per stream, and the event itself
 * is the hub's shared message.
 */
class RunWatch implements AsyncIterableIterator<WatchRunResponse>, FeedListener {
  /** Events taken but not yet returned by next(). */
  private readonly queue: FeedEvent[] = [];
  private waiter:
    | { resolve: (r: IteratorResult<WatchRunResponse>) => void; reject: (e: unknown) => void }
    | undefined;
  /** Sequence of the last event queued. */
  private cursor: number;
  private started = false;
  /** A history read is under way: live events wait in `held`. */
  private reading = false;
  private held: FeedEvent[] = [];
  /** Live events were dropped: read the history before taking live events again. */
  private stale = false;
  /** The final event is queued, or the run is over. */
  private ended = false;
  /** Sequence of a RUN_FINISHED that is the last event queued, while it is checked to be the run's last. */
  private finalAt: number | undefined;
  /** Sequence of the last RUN_FINISHED whose frame the sink has written. */
  private writtenFinal = 0;
  private failure: unknown;
  /** Reads that failed in a row because Redis was unreachable (see retryOrFail). */
  private unreachable = 0;
  private closed = false;
  private counted = false;
  private leave: (() => void) | undefined;
  /** next() has returned an event while a sink is given: the response has begun. */
  private handed = false;
  /** Events go to the sink as envelopes. */
  private frames = false;
  /** The sink's buffer is full: events wait in `queue` until it drains. */
  private blocked = false;
  private readonly onAbort = () =>
    this.fail(this.signal.reason ?? new ConnectError("watch cancelled", Code.Canceled));
  private readonly onDrain = () => {
    this.blocked = false;
    this.flush();
  };

  constructor(
    private readonly deps: WatchDeps,
    private readonly runId: string,
    afterSequence: number,
    private readonly signal: AbortSignal,
    private readonly mapError: (err: unknown) => unknown,
    private readonly sink: Writable | undefined,
    private readonly slot: { acquire(): void; release(): void },
  ) {
    this.cursor = afterSequence;
    if (signal.aborted) this.onAbort();
    else signal.addEventListener("abort", this.onAbort, { once: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<WatchRunResponse>> {
    if (this.handed && !this.frames && !this.ended && !this.closed && this.failure === undefined) {
      // The framework has written the headers and the first event: write the rest ourselves.
      this.frames = true;
      const settled = new Promise<IteratorResult<WatchRunResponse>>((resolve, reject) => {
        this.waiter = { resolve, reject };
      });
      this.flush();
      return settled;
    }
    const e = this.queue.shift();
    if (e !== undefined) {
      this.handed = this.sink !== undefined;
      if (this.stale && !this.reading && this.queue.length === 0) this.read();
      return Promise.resolve(e.result);
    }
    if (this.failure !== undefined) {
      this.close();
      return Promise.reject(this.failure);
    }
    if (this.ended || this.closed) {
      this.close();
      return Promise.resolve(END);
    }
    if (!this.started) {
      this.started = true;
      this.start().catch((err: unknown) => this.fail(err));
    }
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** The call is over (finished, cancelled or failed downstream): free everything. */
  return(): Promise<IteratorResult<WatchRunResponse>> {
    this.close();
    return Promise.resolve(END);
  }

  offer(events: readonly FeedEvent[]): void {
    if (this.closed || this.ended) return;
    if (this.reading) {
      if (this.held.length + events.length > MAX_QUEUED) this.stale = true;
      else for (const e of events) this.held.push(e);
      return;
    }
    if (!this.stale) this.accept(events);
  }

  private async start(): Promise<void> {
    const { deps, runId } = this;
    checkRunId(runId);
    if ((await deps.redis.exists(deps.keys.run(runId).run)) === 0) throw notFound(runId);
    if (this.closed) return;
    this.slot.acquire();
    this.counted = true;
    // Live events wait in `held` until the history is read.
    this.reading = true;
    const leave = await deps.hub.join(runId, this);
    if (this.closed) {
      leave();
      return;
    }
    this.leave = leave;
    this.read(true);
  }

  /**
   * Reads the history after the cursor, then takes live events again; after the first read
   * (`first`), once it has checked whether the run is over. Reads are tried again while Redis is unreachable (see
   * retryOrFail): events may have been sent already, and a stream that reads on resumes by itself.
   */
  private read(first = false): void {
    this.reading = true;
    this.stale = false;
    this.readHistory((after) => this.deps.hub.history(this.runId, after, PAGE))
      .then((more) => {
        this.unreachable = 0;
        if (!more) return;
        if (first) this.afterFirstRead();
        else this.live();
      })
      .catch((err: unknown) => this.retryOrFail(err, () => this.read(first)));
  }

  /** A finished run watched from at or after its final event has nothing more to send; else live events. */
  private afterFirstRead(): void {
    const { deps, runId } = this;
    deps.redis.hmget(deps.keys.run(runId).run, "s", "seq").then(
      ([status, seq]) => {
        this.unreachable = 0;
        if (this.closed) return;
        if (isFinalRunStatus(status) && Number(seq) <= this.cursor && this.finalAt === undefined) {
          this.end();
          return;
        }
        this.live();
      },
      (err: unknown) => this.retryOrFail(err, () => this.afterFirstRead()),
    );
  }

  /**
   * Queues history pages until one comes short; true when that happened and
   * the stream should go on, false when it ended, closed or its queue is full
   * (it reads again once the client has taken the queue).
   */
  private async readHistory(page: (after: number) => Promise<readonly FeedEvent[]>): Promise<boolean> {
    for (;;) {
      const events = await page(this.cursor);
      if (this.closed) return false;
      for (const e of events) {
        if (e.sequence <= this.cursor) continue;
        this.push(e);
        if (this.ended) return false;
      }
      if (this.queue.length >= MAX_QUEUED) {
        this.reading = false;
        this.held = [];
        this.stale = true;
        return false;
      }
      if (events.length < PAGE) return true;
    }
  }

  /** Back to live events: the ones held during the read first. */
  private live(): void {
    if (this.stale) {
      // Live events were dropped while reading: read again.
      this.read();
      return;
    }
    this.reading = false;
    const held = this.held;
    this.held = [];
    this.accept(held);
  }

  private accept(events: readonly FeedEvent[]): void {
    for (const e of events) {
      if (e.sequence <= this.cursor) continue;
      if (e.sequence !== this.cursor + 1 || this.queue.length >= MAX_QUEUED) {
        // A gap (this stream joined a fetch mid-way), or a client behind: read what is missing.
        this.stale = true;
        if (this.queue.length < MAX_QUEUED) this.read();
        return;
      }
      this.push(e);
      if (this.ended) return;
    }
  }

  private push(e: FeedEvent): void {
    this.cursor = e.sequence;
    if (this.frames) {
      if (this.blocked || this.queue.length > 0) this.queue.push(e);
      else this.write(e);
    } else {
      const waiter = this.waiter;
      if (waiter === undefined) this.queue.push(e);
      else {
        this.waiter = undefined;
        this.handed = this.sink !== undefined;
        waiter.resolve(e.result);
      }
    }
    if (e.final) this.checkEnd(e.sequence);
    else this.finalAt = undefined;
  }

  /**
   * A RUN_FINISHED was queued: the stream ends after it if it is the run's last event (the run's
   * `seq`, written with each event). Otherwise the run was resumed since, and its next events come
   * as any others (an event queued meanwhile clears `finalAt`, and this check does nothing).
   */
  private checkEnd(sequence: number): void {
    this.finalAt = sequence;
    const { deps, runId } = this;
    deps.redis
      .hget(deps.keys.run(runId).run, "seq")
      .then((seq) => {
        this.unreachable = 0;
        if (this.finalAt !== sequence || this.closed) return;
        this.finalAt = undefined;
        if (seq === null || Number(seq) <= sequence) this.end();
      })
      .catch((err: unknown) =>
        this.retryOrFail(err, () => {
          // Unless an event came since (the run was resumed) and cleared the check.
          if (this.finalAt === sequence) this.checkEnd(sequence);
        }),
      );
  }

  /** The sink has written the frame of a RUN_FINISHED: the call ends there if the stream is over. */
  private finalWritten(sequence: number): void {
    this.writtenFinal = sequence;
    if (this.ended && this.queue.length === 0) this.finish();
  }

  private write(e: FeedEvent): void {
    const sink = this.sink as Writable;
    // A stream closed under us ends the call, and its signal this watch.
    if (sink.destroyed || sink.writableEnded) return;
    // The call ends once its final event has left: ending a call costs the framework far more than a
    // write, and ending a thousand of them first would hold that event back from every watcher.
    if (!sink.write(e.frame, e.final ? () => this.finalWritten(e.sequence) : undefined)) {
      this.blocked = true;
      sink.once("drain", this.onDrain);
    }
  }

  /** Writes the queue while the sink takes it; once it is empty, reads what the queue's limit dropped. */
  private flush(): void {
    while (!this.blocked && !this.closed) {
      const e = this.queue.shift();
      if (e === undefined) break;
      this.write(e);
    }
    if (this.queue.length === 0 && !this.closed && !this.ended && this.stale && !this.reading) this.read();
  }

  /**
   * No event will follow: stop listening, and end the stream once the queue is taken (writing
   * frames: once the final event is written).
   */
  private end(): void {
    this.ended = true;
    this.leave?.();
    this.leave = undefined;
    if (this.queue.length === 0 && (!this.frames || this.writtenFinal === this.cursor)) this.finish();
  }

  /** Ends a call waiting on next(). */
  private finish(): void {
    const waiter = this.waiter;
    if (waiter === undefined) return;
    this.waiter = undefined;
    waiter.resolve(END);
    this.close();
  }

  /**
   * A read the stream needs failed. While Redis is unreachable it is tried again, later and later
   * (the event hub does the same for the live events): a run's last event may have been announced
   * already, and no other notification would come. Past {@link MAX_UNREACHABLE} tries, or on any
   * other error, the stream ends with it (a client resumes with after_sequence).
   */
  private retryOrFail(err: unknown, again: () => void): void {
    if (this.closed) return;
    if (!isRedisUnavailableError(err) || this.unreachable >= MAX_UNREACHABLE) {
      this.fail(err);
      return;
    }
    this.unreachable++;
    const retry = setTimeout(
      () => {
        if (!this.closed) again();
      },
      Math.min(100 * 2 ** this.unreachable, 5000),
    );
    retry.unref();
  }

  private fail(err: unknown): void {
    if (this.closed) return;
    this.failure ??= this.mapError(err);
    const waiter = this.waiter;
    this.waiter = undefined;
    this.close();
    waiter?.reject(this.failure);
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.held = [];
    this.leave?.();
    this.leave = undefined;
    this.signal.removeEventListener("abort", this.onAbort);
    this.sink?.removeListener("drain", this.onDrain);
    if (this.counted) this.slot.release();
    this.counted = false;
  }
}
