import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { ReconnectOptions } from "./client-options.js";
import { EventType, type RunEvent } from "./gen/weft/v1/run_pb.js";
import type {
  RunFollowSchema,
  WatchRunsRequestSchema,
  WatchRunsResponse,
} from "./gen/weft/v1/run_watch_pb.js";
import type { WorkflowService } from "./gen/weft/v1/workflow_service_pb.js";
import { backoffDelay, isTransient } from "./reconnect.js";

type Request = MessageInitShape<typeof WatchRunsRequestSchema>;
type RunFollowInit = MessageInitShape<typeof RunFollowSchema>;

/** How a follow ended. */
export type FollowEnd =
  /** The run's RUN_FINISHED was delivered. */
  | { kind: "finished" }
  /** The run had finished at or before the follower's sequence: nothing more will come. */
  | { kind: "past-end" }
  /** The shared stream cannot serve this follow (weftd lacks WatchRuns, or its limit): use WatchRun. */
  | { kind: "unsupported"; error: ConnectError }
  /** A final error: NOT_FOUND, a permission, or the last of too many failed reconnections. */
  | { kind: "failed"; error: ConnectError };

/** What happens to one follower of a run on the shared stream. */
export interface Follower {
  /** Events with a sequence up to this one are not delivered; it advances as events are. */
  after: bigint;
  /** Every event of the run; false: RUN_FINISHED only. */
  allEvents: boolean;
  onEvent(event: RunEvent): void;
  /** Called once; nothing is delivered afterwards. */
  onEnd(end: FollowEnd): void;
  /** The shared stream dropped and reopens after `delayMs` (attempt `attempt` in a row). */
  onReconnect?(attempt: number, delayMs: number, error: ConnectError): void;
}

/** One run the stream follows, for all its followers. */
interface Followed {
  followers: Set<Follower>;
  /** What the stream was last asked for this run; undefined until asked (or since it reopened). */
  sent: { after: bigint; all: boolean } | undefined;
  /** The stream's last event of this run, or the cursor it was asked from: it sends what follows. */
  position: bigint;
}

/** Entries of one message's lists (weftd takes 10,000; smaller messages leave it room for the rest). */
const MESSAGE_ENTRIES = 1000;
/**
 * How long the stream stays open with nothing followed before it closes: waits that come one after
 * the other reuse it, and a program that is done exits at most this long after its last wait (an
 * open stream holds the connection), unless it calls close().
 */
const IDLE_CLOSE_MS = 1000;

/** A request stream fed as the client goes. */
class RequestQueue implements AsyncIterable<Request> {
  private readonly queue: Request[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;

  push(req: Request): void {
    this.queue.push(req);
    this.wake();
  }

  end(): void {
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Request> {
    for (;;) {
      const next = this.queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }
}

/**
 * One WatchRuns stream per client for every run it waits for or watches: opened when the first
 * follower comes, closed a while after the last one left, and reopened after a drop with each
 * run's cursor, so that every follower gets each event it wants once, in order. The changes of one
 * tick go to weftd as one message.
 */
export class SharedWatch {
  private readonly runs = new Map<string, Followed>();
  /** Runs whose follow changed in this tick; sent at its end. */
  private readonly dirty = new Set<string>();
  private flushing = false;
  private requests: RequestQueue | undefined;
  private call: AbortController | undefined;
  /** Failed opens in a row. */
  private failures = 0;
  private reopenTimer: NodeJS.Timeout | undefined;
  /** Runs the current stream was asked to follow and has not ended. */
  private readonly asked = new Set<string>();
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** weftd answered UNIMPLEMENTED: every follow goes to WatchRun from now on. */
  unsupported = false;

  constructor(
    private readonly rpc: Client<typeof WorkflowService>,
    private readonly reconnect: Required<ReconnectOptions>,
  ) {}

  /** Follows a run for `follower`; the result stops following (no onEnd afterwards). */
  follow(runId: string, follower: Follower): () => void {
    if (this.closed || this.unsupported) {
      const error = new ConnectError("the client is closed", Code.Canceled);
      queueMicrotask(() =>
        follower.onEnd(this.closed ? { kind: "failed", error } : { kind: "unsupported", error }),
      );
      return () => {};
    }
    let followed = this.runs.get(runId);
    if (followed === undefined) {
      followed = { followers: new Set(), sent: undefined, position: 0n };
      this.runs.set(runId, followed);
    }
    followed.followers.add(follower);
    this.markDirty(runId);
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.call === undefined && this.reopenTimer === undefined) this.open();
    return () => {
      const current = this.runs.get(runId);
      if (current === undefined || !current.followers.delete(follower)) return;
      if (current.followers.size === 0) this.runs.delete(runId);
      this.markDirty(runId);
      this.closeWhenIdle();
    };
  }

  /** Closes the stream; every follower still waiting ends with CANCELED. */
  close(): void {
    this.closed = true;
    clearTimeout(this.reopenTimer);
    clearTimeout(this.idleTimer);
    this.call?.abort();
    this.call = undefined;
    this.endAll({ kind: "failed", error: new ConnectError("the client was closed", Code.Canceled) });
  }

  private markDirty(runId: string): void {
    this.dirty.add(runId);
    if (this.flushing) return;
    this.flushing = true;
    queueMicrotask(() => this.flush());
  }

  /** Sends what changed in this tick, if the stream is open (else its opening sends everything). */
  private flush(): void {
    this.flushing = false;
    const requests = this.requests;
    if (requests === undefined) {
      this.dirty.clear();
      return;
    }
    const adds: RunFollowInit[] = [];
    const removes: string[] = [];
    for (const runId of this.dirty) {
      const followed = this.runs.get(runId);
      if (followed === undefined) {
        // A follow the stream was asked for and no follower needs any more.
        if (this.asked.delete(runId)) removes.push(runId);
        continue;
      }
      const wanted = this.wanted(followed);
      const sent = followed.sent;
      // Asked already for as much: more followers of the same run cost nothing. A follower from
      // before the stream's position, or the first one wanting every event, asks again (weftd
      // replaces the follow; followers skip what they have).
      if (sent !== undefined && followed.position <= wanted.after && (sent.all || !wanted.all)) continue;
      followed.sent = wanted;
      followed.position = wanted.after;
      this.asked.add(runId);
      adds.push({ runId, afterSequence: wanted.after, allEvents: wanted.all });
    }
    this.dirty.clear();
    for (let i = 0; i < Math.max(adds.length, removes.length); i += MESSAGE_ENTRIES) {
      requests.push({
        addRuns: adds.slice(i, i + MESSAGE_ENTRIES),
        removeRuns: removes.slice(i, i + MESSAGE_ENTRIES),
      });
    }
  }

  /** The cursor and kind of follow that serve every follower of a run. */
  private wanted(followed: Followed): { after: bigint; all: boolean } {
    let all = false;
    let after: bigint | undefined;
    for (const f of followed.followers) {
      if (f.allEvents) all = true;
    }
    for (const f of followed.followers) {
      // A follower of RUN_FINISHED alone is served by any cursor before the run's end.
      if (all && !f.allEvents) continue;
      if (after === undefined || f.after < after) after = f.after;
    }
    return { after: after ?? 0n, all };
  }

  private open(): void {
    if (this.closed || this.runs.size === 0) return;
    const requests = new RequestQueue();
    const call = new AbortController();
    this.requests = requests;
    this.call = call;
    this.asked.clear();
    for (const followed of this.runs.values()) followed.sent = undefined;
    this.dirty.clear();
    for (const runId of this.runs.keys()) this.dirty.add(runId);
    this.flush();
    void this.read(requests, call);
  }

  private async read(requests: RequestQueue, call: AbortController): Promise<void> {
    let error: ConnectError;
    let opened = false;
    try {
      for await (const res of this.rpc.watchRuns(requests, { signal: call.signal })) {
        if (!opened) {
          opened = true;
          this.failures = 0;
        }
        this.dispatch(res);
      }
      error = new ConnectError("the WatchRuns stream ended", Code.Unavailable);
    } catch (err) {
      error = ConnectError.from(err);
    }
    if (this.call !== call) return;
    this.call = undefined;
    this.requests = undefined;
    requests.end();
    if (this.closed || this.runs.size === 0) return;
    if (error.code === Code.Unimplemented) {
      this.unsupported = true;
      this.endAll({ kind: "unsupported", error });
      return;
    }
    if (!isTransient(error)) {
      this.endAll({ kind: "failed", error });
      return;
    }
    this.failures++;
    if (this.failures > this.reconnect.maxAttempts) {
      this.failures = 0;
      this.endAll({ kind: "failed", error });
      return;
    }
    const delayMs = backoffDelay(this.failures, this.reconnect);
    for (const followed of this.runs.values()) {
      for (const f of followed.followers) f.onReconnect?.(this.failures, delayMs, error);
    }
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      this.open();
    }, delayMs);
  }

  private dispatch(res: WatchRunsResponse): void {
    for (const event of res.events) {
      const followed = this.runs.get(event.runId);
      if (followed === undefined) continue;
      if (event.sequence > followed.position) followed.position = event.sequence;
      const final = event.type === EventType.RUN_FINISHED;
      for (const f of [...followed.followers]) {
        if (f.allEvents) {
          // Strictly the next one: after a follow was asked again from an earlier sequence, events
          // the former follow had already sent may come before the replay, which brings them in order.
          if (event.sequence !== f.after + 1n) continue;
        } else if (!final || event.sequence <= f.after) continue;
        f.after = event.sequence;
        f.onEvent(event);
        if (final) {
          followed.followers.delete(f);
          f.onEnd({ kind: "finished" });
        }
      }
      if (final) {
        // Followers that came in at or past the run's end: nothing more comes for them.
        for (const f of [...followed.followers]) {
          if (f.after < event.sequence) continue;
          followed.followers.delete(f);
          f.onEnd({ kind: "past-end" });
        }
      }
      // weftd stops following a run after its RUN_FINISHED; followers still behind get it from the replay.
      if (followed.followers.size === 0) {
        this.runs.delete(event.runId);
        this.asked.delete(event.runId);
        this.closeWhenIdle();
      }
    }
    for (const r of res.rejections) {
      if (r.runId === "") continue;
      const followed = this.runs.get(r.runId);
      if (followed === undefined) continue;
      this.runs.delete(r.runId);
      this.asked.delete(r.runId);
      const error = new ConnectError(r.message, r.code as Code);
      const end: FollowEnd =
        r.code === Code.OutOfRange
          ? { kind: "past-end" }
          : r.code === Code.ResourceExhausted
            ? { kind: "unsupported", error }
            : { kind: "failed", error };
      for (const f of followed.followers) f.onEnd(end);
      this.closeWhenIdle();
    }
  }

  private endAll(end: FollowEnd): void {
    const runs = [...this.runs.values()];
    this.runs.clear();
    this.asked.clear();
    for (const followed of runs) for (const f of followed.followers) f.onEnd(end);
  }

  /** Closes the stream once nothing has been followed for a while (a burst of waits reuses it). */
  private closeWhenIdle(): void {
    if (this.runs.size > 0 || this.idleTimer !== undefined) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.runs.size > 0) return;
      clearTimeout(this.reopenTimer);
      this.reopenTimer = undefined;
      const call = this.call;
      this.call = undefined;
      this.requests?.end();
      this.requests = undefined;
      call?.abort();
    }, IDLE_CLOSE_MS);
    this.idleTimer.unref();
  }
}
