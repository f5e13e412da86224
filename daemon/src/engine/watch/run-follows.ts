import { Code } from "@connectrpc/connect";
import type { RedisClient } from "../../redis/redis.js";
import { isFinalRunStatus } from "../runs/index.js";
import type { Keys } from "../shared/index.js";
import type { EventHub, FeedEvent, FeedListener } from "./event-hub.js";
import { type FinishHub, MISSING } from "./finish-hub.js";

/** Why a follow ended without its run's final event: a gRPC code and a message. */
export interface FollowEnd {
  code: Code;
  message: string;
}

/** What a follow needs from the stream it belongs to. */
export interface FollowOwner {
  /** Queues an event for the client. */
  emit(event: FeedEvent): void;
  /** The follow is over: after its final event (no `end`), or refused or ended (`end` says why). */
  ended(follow: RunFollow, end?: FollowEnd): void;
  /** The follow could not go on (Redis failed): the stream ends with this error. */
  failed(err: unknown): void;
  /** Resolves once {@link room} is above 0 (at once when the stream is closed). */
  pace(): Promise<void>;
  /**
   * How many more events read from Redis (history, and the ends of runs that had finished) may be
   * queued now: what keeps the buffer at most half full, the other half being for what arrives
   * live (the runs' final events). Large once the stream is closed, where events are dropped.
   */
  room(): number;
}

/** What follows read from. */
export interface FollowDeps {
  redis: RedisClient;
  keys: Keys;
  hub: EventHub;
  finishes: FinishHub;
}

/** Events read from a run's history at a time. */
const PAGE = 500;
/** Live events a follow holds while it reads history; past it, it reads the history again. */
const MAX_HELD = 1000;

/** One run followed by a WatchRuns stream, from a sequence on. */
export interface RunFollow {
  readonly runId: string;
  start(): void;
  /** Stops following: nothing more is emitted. */
  close(): void;
}

function notFoundEnd(runId: string): FollowEnd {
  return { code: Code.NotFound, message: `run "${runId}" not found` };
}

function outOfRangeEnd(runId: string, last: number, after: number): FollowEnd {
  return {
    code: Code.OutOfRange,
    message: `run "${runId}" finished at sequence ${last}: no event follows sequence ${after}`,
  };
}

/** Follows a run's end only: its RUN_FINISHED event, through the workflow's finish channel. */
export class FinishFollow implements RunFollow {
  private closed = false;
  private leave: (() => void) | undefined;

  constructor(
    private readonly deps: FollowDeps,
    private readonly owner: FollowOwner,
    readonly runId: string,
    private readonly after: number,
  ) {}

  start(): void {
    this.deps.finishes
      .followRun(this.runId, (event) => this.finished(event))
      .then(async (outcome) => {
        if (outcome.kind === "following") {
          if (this.closed) outcome.leave();
          else this.leave = outcome.leave;
          return;
        }
        if (outcome.kind === "notfound") {
          this.end(notFoundEnd(this.runId));
          return;
        }
        // Read, not heard live: it waits for room like history does, so that a stream resumed
        // with thousands of runs that finished meanwhile is not over its bound at once.
        while (!this.closed && this.owner.room() <= 0) await this.owner.pace();
        this.finished(outcome.event);
      })
      .catch((err: unknown) => {
        if (!this.closed) this.owner.failed(err);
      });
  }

  private finished(event: FeedEvent): void {
    if (this.closed) return;
    if (event === MISSING) this.end(notFoundEnd(this.runId));
    else if (event.sequence <= this.after) this.end(outOfRangeEnd(this.runId, event.sequence, this.after));
    else {
      this.owner.emit(event);
      this.end(undefined);
    }
  }

  private end(end: FollowEnd | undefined): void {
    if (this.closed) return;
    this.close();
    this.owner.ended(this, end);
  }

  close(): void {
    this.closed = true;
    this.leave?.();
    this.leave = undefined;
  }
}

/**
 * Follows every event of a run after a sequence: its history first (page by page, as the stream's
 * buffer has room), then its live events from the replica's event hub, in order, with no gap: a gap
 * in what the hub offers, live events dropped while the history was read, and live events the
 * stream's buffer had no room for (a client that reads slower than the run moves) are read again
 * from the run's event list once there is room. Such a follow never fills the stream's buffer.
 */
export class EventsFollow implements RunFollow, FeedListener {
  private cursor: number;
  /** A history read is under way: live events wait in `held`. */
  private reading = true;
  private held: FeedEvent[] = [];
  /** Live events were dropped while reading: read again before taking live ones. */
  private stale = false;
  private closed = false;
  private leave: (() => void) | undefined;

  constructor(
    private readonly deps: FollowDeps,
    private readonly owner: FollowOwner,
    readonly runId: string,
    after: number,
  ) {
    this.cursor = after;
  }

  start(): void {
    this.begin().catch((err: unknown) => {
      if (!this.closed) this.owner.failed(err);
    });
  }

  private async begin(): Promise<void> {
    const { deps, runId } = this;
    const [status, seq] = await deps.redis.hmget(deps.keys.run(runId).run, "s", "seq");
    if (this.closed) return;
    if (status === null) return this.end(notFoundEnd(runId));
    if (isFinalRunStatus(status) && this.cursor >= Number(seq)) {
      return this.end(outOfRangeEnd(runId, Number(seq), this.cursor));
    }
    const leave = await deps.hub.join(runId, this);
    if (this.closed) {
      leave();
      return;
    }
    this.leave = leave;
    await this.catchUp();
  }

  offer(events: readonly FeedEvent[]): void {
    if (this.closed) return;
    if (this.reading) {
      if (this.stale) return;
      if (this.held.length + events.length > MAX_HELD) {
        this.stale = true;
        this.held = [];
      } else for (const e of events) this.held.push(e);
      return;
    }
    if (events.length > this.owner.room()) {
      // The client is behind: these are read again once it has taken what waits for it.
      this.restart();
      return;
    }
    this.accept(events);
  }

  private restart(): void {
    this.catchUp().catch((err: unknown) => {
      if (!this.closed) this.owner.failed(err);
    });
  }

  /**
   * Reads the history after the cursor, as the stream's buffer has room, until it has all of it;
   * then takes the live events held meanwhile (or reads again when they were dropped, or do not fit).
   */
  private async catchUp(): Promise<void> {
    this.reading = true;
    for (;;) {
      this.stale = false;
      this.held = [];
      for (;;) {
        await this.owner.pace();
        if (this.closed) return;
        const want = Math.max(1, Math.min(PAGE, this.owner.room()));
        const page = await this.deps.hub.history(this.runId, this.cursor, want);
        if (this.closed) return;
        for (const e of page) {
          if (e.sequence !== this.cursor + 1) continue;
          this.push(e);
          if (this.closed) return;
        }
        if (page.length < want) break;
      }
      if (!this.stale && this.held.length <= this.owner.room()) break;
    }
    this.reading = false;
    const held = this.held;
    this.held = [];
    this.accept(held);
  }

  private accept(events: readonly FeedEvent[]): void {
    for (const e of events) {
      if (e.sequence <= this.cursor) continue;
      if (e.sequence !== this.cursor + 1) {
        // A gap (this follow joined a fetch mid-way): read what is missing.
        this.restart();
        return;
      }
      this.push(e);
      if (this.closed) return;
    }
  }

  private push(e: FeedEvent): void {
    this.cursor = e.sequence;
    this.owner.emit(e);
    if (e.final) this.end(undefined);
  }

  private end(end: FollowEnd | undefined): void {
    if (this.closed) return;
    this.close();
    this.owner.ended(this, end);
  }

  close(): void {
    this.closed = true;
    this.held = [];
    this.leave?.();
    this.leave = undefined;
  }
}
