import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { RunEvent } from "@weft/sdk/gen/weft/v1/run_pb.js";
import {
  type WatchRunsRejection,
  WatchRunsRejectionSchema,
  type WatchRunsRequest,
  type WatchRunsResponse,
  WatchRunsResponseSchema,
} from "@weft/sdk/gen/weft/v1/run_watch_pb.js";
import type { FeedEvent } from "./event-hub.js";
import {
  EventsFollow,
  FinishFollow,
  type FollowDeps,
  type FollowEnd,
  type FollowOwner,
  type RunFollow,
} from "./run-follows.js";

/** The bounds of one WatchRuns stream. */
export interface RunsWatchLimits {
  /** Most runs the stream follows at once; one more is refused with RESOURCE_EXHAUSTED. */
  maxRuns: number;
  /** Most workflows the stream follows at once; one more is refused with RESOURCE_EXHAUSTED. */
  maxWorkflows: number;
  /**
   * Most events waiting to be sent to a client that reads slower than its runs move; past it the
   * stream ends with RESOURCE_EXHAUSTED (the client resumes each run after its last sequence).
   */
  maxBuffered: number;
  /** The same bound in bytes of the events' stored values. */
  maxBufferedBytes: number;
  /** Largest message the stream sends (--max-response-bytes). */
  maxMessageBytes: number;
}

/** Runs delivered through a run's follow that a workflow's announcement must not send again. */
const RECENT_FINALS = 1000;

/** Encoded size of a rejection, bounded: its strings are a run id, a workflow name and a short message. */
const REJECTION_BYTES = 512;

type Pending = { event: FeedEvent } | { rejection: WatchRunsRejection };

/**
 * The state of one WatchRuns stream: the runs and workflows it follows, and what waits to be sent.
 * The service reads requests into {@link apply} and sends what {@link takeFrames} or
 * {@link takeMessages} return whenever {@link onOutput} is called.
 */
export class RunsWatch implements FollowOwner {
  private readonly runs = new Map<string, RunFollow>();
  private readonly workflows = new Map<string, Promise<(() => void) | undefined>>();
  private readonly recentFinals = new Set<string>();
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private pendingEvents = 0;
  private paced: (() => void)[] = [];
  private closed = false;
  /** Why the stream must end (a slow client, Redis); undefined while it may go on. */
  failure: ConnectError | unknown | undefined;

  constructor(
    private readonly deps: FollowDeps,
    private readonly limits: RunsWatchLimits,
    /** Called when something waits to be sent or the stream failed. */
    private readonly onOutput: () => void,
  ) {}

  /** Number of runs followed. */
  get runCount(): number {
    return this.runs.size;
  }

  /** Whether nothing is followed and nothing waits to be sent. */
  get idle(): boolean {
    return this.runs.size === 0 && this.workflows.size === 0 && this.pending.length === 0;
  }

  /** Applies one (validated) request: removals first, then additions. */
  apply(req: WatchRunsRequest): void {
    if (this.closed) return;
    for (const runId of req.removeRuns) {
      this.runs.get(runId)?.close();
      this.runs.delete(runId);
    }
    for (const name of req.removeWorkflows) {
      const following = this.workflows.get(name);
      if (following === undefined) continue;
      this.workflows.delete(name);
      void following.then((leave) => leave?.());
    }
    for (const add of req.addRuns) {
      const previous = this.runs.get(add.runId);
      if (previous !== undefined) {
        previous.close();
        this.runs.delete(add.runId);
      }
      if (this.runs.size >= this.limits.maxRuns) {
        this.reject({
          runId: add.runId,
          code: Code.ResourceExhausted,
          message: `this stream already follows ${this.runs.size} runs (limit ${this.limits.maxRuns} per stream, --max-runs-per-watch)`,
        });
        continue;
      }
      const after = Number(add.afterSequence);
      const follow = add.allEvents
        ? new EventsFollow(this.deps, this, add.runId, after)
        : new FinishFollow(this.deps, this, add.runId, after);
      this.runs.set(add.runId, follow);
      follow.start();
    }
    for (const { workflow } of req.addWorkflows) {
      if (this.workflows.has(workflow)) continue;
      if (this.workflows.size >= this.limits.maxWorkflows) {
        this.reject({
          workflow,
          code: Code.ResourceExhausted,
          message: `this stream already follows ${this.workflows.size} workflows (limit ${this.limits.maxWorkflows} per stream)`,
        });
        continue;
      }
      this.followWorkflow(workflow);
    }
  }

  private followWorkflow(workflow: string): void {
    const { redis, keys, finishes } = this.deps;
    // Assigned before the first await below: the follow compares itself with what the map holds.
    let following: Promise<(() => void) | undefined> | undefined;
    following = (async () => {
      // A workflow that does not exist is most likely a mistake in its name: said at once.
      if ((await redis.hexists(keys.workflow(workflow), "latest")) === 0) {
        if (this.workflows.get(workflow) === following) this.workflows.delete(workflow);
        this.reject({ workflow, code: Code.NotFound, message: `workflow "${workflow}" not found` });
        return undefined;
      }
      const leave = await finishes.followWorkflow(workflow, (runId, event) => {
        if (this.closed || this.workflows.get(workflow) !== following) return;
        // A run the stream follows by id gets its final event from that follow.
        if (this.runs.has(runId) || this.recentFinals.has(runId)) return;
        this.emit(event);
      });
      if (this.closed || this.workflows.get(workflow) !== following) {
        leave();
        return undefined;
      }
      return leave;
    })().catch((err: unknown) => {
      this.failed(err);
      return undefined;
    });
    this.workflows.set(workflow, following);
  }

  emit(event: FeedEvent): void {
    if (this.closed) return;
    if (event.final && this.workflows.size > 0) {
      const runId = (event.result.value.event as RunEvent).runId;
      this.recentFinals.add(runId);
      if (this.recentFinals.size > RECENT_FINALS) {
        this.recentFinals.delete(this.recentFinals.values().next().value as string);
      }
    }
    this.pending.push({ event });
    this.pendingEvents++;
    this.pendingBytes += event.size;
    if (this.pendingEvents > this.limits.maxBuffered || this.pendingBytes > this.limits.maxBufferedBytes) {
      this.fail(
        new ConnectError(
          `the client reads slower than its runs move: ${this.pendingEvents} events (${this.pendingBytes} bytes) ` +
            `wait to be sent, over the limit of ${this.limits.maxBuffered} events or ${this.limits.maxBufferedBytes} bytes ` +
            "per stream (--max-watch-buffer); reconnect, following each run after the last sequence you have",
          Code.ResourceExhausted,
        ),
      );
      return;
    }
    if (this.pending.length === 1) this.onOutput();
  }

  ended(follow: RunFollow, end?: FollowEnd): void {
    if (this.runs.get(follow.runId) === follow) this.runs.delete(follow.runId);
    if (end !== undefined) this.reject({ runId: follow.runId, code: end.code, message: end.message });
    else if (this.idle) this.onOutput();
  }

  failed(err: unknown): void {
    this.fail(err);
  }

  pace(): Promise<void> {
    if (this.hasRoom()) return Promise.resolve();
    return new Promise((resolve) => this.paced.push(resolve));
  }

  room(): number {
    if (this.closed) return Number.MAX_SAFE_INTEGER;
    if (this.pendingBytes >= this.limits.maxBufferedBytes / 2) return 0;
    return Math.max(0, Math.ceil(this.limits.maxBuffered / 2) - this.pendingEvents);
  }

  private hasRoom(): boolean {
    return this.room() > 0;
  }

  private reject(init: { runId?: string; workflow?: string; code: Code; message: string }): void {
    if (this.closed) return;
    this.pending.push({ rejection: create(WatchRunsRejectionSchema, init) });
    if (this.pending.length === 1) this.onOutput();
  }

  private fail(err: unknown): void {
    if (this.closed) return;
    this.failure ??= err;
    this.close();
    this.onOutput();
  }

  /**
   * What waits to be sent, as ready-made binary envelopes of WatchRunsResponse messages, each within
   * the message limit: an event's envelope body (a WatchRunResponse, shared by every stream of the
   * replica) is, byte for byte, one entry of `events`.
   */
  takeFrames(): Buffer[] {
    const frames: Buffer[] = [];
    let parts: Uint8Array[] = [];
    let size = 0;
    const seal = () => {
      if (parts.length === 0) return;
      const frame = Buffer.allocUnsafe(5 + size);
      frame[0] = 0;
      frame.writeUInt32BE(size, 1);
      let at = 5;
      for (const part of parts) {
        frame.set(part, at);
        at += part.length;
      }
      frames.push(frame);
      parts = [];
      size = 0;
    };
    for (const item of this.take()) {
      const body =
        "event" in item
          ? item.event.frame.subarray(5)
          : toBinary(
              WatchRunsResponseSchema,
              create(WatchRunsResponseSchema, { rejections: [item.rejection] }),
            );
      if (size > 0 && size + body.length > this.limits.maxMessageBytes) seal();
      parts.push(body);
      size += body.length;
    }
    seal();
    return frames;
  }

  /** What waits to be sent, as messages within the message limit (for protocols that need them). */
  takeMessages(): WatchRunsResponse[] {
    const messages: WatchRunsResponse[] = [];
    let current = create(WatchRunsResponseSchema);
    let size = 0;
    for (const item of this.take()) {
      const bytes = "event" in item ? item.event.size + 256 : REJECTION_BYTES;
      if (size > 0 && size + bytes > this.limits.maxMessageBytes) {
        messages.push(current);
        current = create(WatchRunsResponseSchema);
        size = 0;
      }
      if ("event" in item) current.events.push(item.event.result.value.event as RunEvent);
      else current.rejections.push(item.rejection);
      size += bytes;
    }
    if (size > 0) messages.push(current);
    return messages;
  }

  private take(): Pending[] {
    const taken = this.pending;
    this.pending = [];
    this.pendingEvents = 0;
    this.pendingBytes = 0;
    const paced = this.paced;
    this.paced = [];
    for (const resume of paced) resume();
    return taken;
  }

  /** Stops every follow; nothing more is emitted. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const follow of this.runs.values()) follow.close();
    this.runs.clear();
    for (const following of this.workflows.values()) void following.then((leave) => leave?.());
    this.workflows.clear();
    const paced = this.paced;
    this.paced = [];
    for (const resume of paced) resume();
  }
}
