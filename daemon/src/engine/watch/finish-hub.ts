import type { Logger } from "pino";
import { logThrottle } from "../../observability/log-throttle.js";
import type { ChannelSubscriber } from "../../redis/channel-subscriber.js";
import type { RedisClient } from "../../redis/redis.js";
import { isFinalRunStatus } from "../runs/index.js";
import type { Keys } from "../shared/index.js";
import { type EventHub, type FeedEvent, feedEvent } from "./event-hub.js";

/** Gets the RUN_FINISHED event of the run it follows, once. */
export type FinishListener = (event: FeedEvent) => void;

/** Gets the RUN_FINISHED event of each run of a workflow that finishes while it follows the workflow. */
export type WorkflowListener = (runId: string, event: FeedEvent) => void;

/** What following a run's end found. */
export type FinishFollow =
  | { kind: "notfound" }
  /** The run had finished: its final event. */
  | { kind: "finished"; event: FeedEvent }
  /** The listener gets the final event once the run finishes (maybe before this settles). */
  | { kind: "following"; leave: () => void };

/**
 * How long a workflow's channel stays subscribed once nothing follows it: waits that come one after
 * the other (a run triggered and awaited, then the next) do not subscribe and unsubscribe each time.
 */
const LINGER_MS = 10_000;

/** Announcements each workflow's group remembers (see WorkflowGroup.recent). */
const RECENT = 1000;

/** Reads of a final event that failed in a row before delivering gives up for workflow followers. */
const MAX_READ_FAILURES = 8;

/** The followers, on this replica, of one workflow's finish channel. */
class WorkflowGroup {
  /** Runs followed until they finish, by id. */
  readonly runs = new Map<string, Set<FinishListener>>();
  readonly followers = new Set<WorkflowListener>();
  /** Settles once the channel is subscribed. */
  ready: Promise<void> = Promise.resolve();
  /** The hub's clock when the subscription was confirmed; infinite until then. */
  confirmedAt = Number.POSITIVE_INFINITY;
  /** Set while nothing follows the workflow: drops the group when it fires (see LINGER_MS). */
  linger: NodeJS.Timeout | undefined;
  /**
   * The latest announcements, by run, with the hub's clock when each came: a run whose status was
   * read before its announcement came, but which was not followed yet then, finds it here.
   */
  readonly recent = new Map<string, { sequence: number; at: number }>();
  /** The clock of the newest announcement dropped from `recent`. */
  forgotAt = 0;

  constructor(
    readonly name: string,
    readonly channel: string,
  ) {}

  get empty(): boolean {
    return this.runs.size === 0 && this.followers.size === 0;
  }
}

/**
 * Tells streams on this replica when runs finish, through one channel per workflow rather than one
 * per run: the step that finishes a run announces "<runId> <sequence>" on its workflow's channel
 * (see keys.workflowDone), so that waiting for thousands of runs of a workflow costs one
 * subscription, no read until each run finishes, and one read of its final event then, shared by
 * every follower on the replica. A run's other steps cost its followers nothing.
 */
export class FinishHub {
  private readonly groups = new Map<string, WorkflowGroup>();
  private readonly byChannel = new Map<string, WorkflowGroup>();
  /** Reads of final events under way, by run: one read whatever the number of followers. */
  private readonly reads = new Map<string, Promise<FeedEvent | undefined>>();
  /** Orders subscription confirmations and reads (see followRun). */
  private clock = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly subscriber: ChannelSubscriber,
    private readonly keys: Keys,
    private readonly logger: Logger,
    /** Largest output an event carries; a larger one is left out of it and marked. */
    private readonly maxOutputBytes: number,
    /**
     * On a Redis Cluster: each run followed by id is followed on the run's own (shard) channel,
     * through the replica's event hub, rather than on its workflow's channel, which every node
     * hears; only workflows are followed there (`subscriber` is then a classic one).
     */
    private readonly runChannels?: EventHub,
  ) {
    subscriber.onMessage((channel, message) => {
      const group = this.byChannel.get(channel);
      if (group === undefined) return;
      // "<runId> <sequence>", or "<runId> <sequence> <entry>" with the final event's entry.
      const space = message.indexOf(" ");
      const runId = message.slice(0, space);
      const second = message.indexOf(" ", space + 1);
      const sequence = Number.parseInt(message.slice(space + 1, second < 0 ? undefined : second), 10);
      this.remember(group, runId, sequence);
      if (group.followers.size === 0 && !group.runs.has(runId)) return;
      const event = second < 0 ? undefined : feedEvent(runId, message.slice(second + 1), this.maxOutputBytes);
      if (event?.final === true) this.dispatch(group, runId, event);
      else this.deliver(group, runId, sequence, 0);
    });
    // Announcements made while a channel was not subscribed are lost: check the runs followed there
    // again. (Runs of followed workflows that finished meanwhile are not sent: a workflow is followed
    // live.)
    subscriber.onResubscribed((channels) => {
      const again = channels === "all" ? null : new Set(channels);
      for (const group of this.groups.values()) {
        if (again !== null && !again.has(group.channel)) continue;
        for (const runId of group.runs.keys()) this.check(group, runId);
      }
    });
  }

  /** Workflows whose channel this replica follows. */
  get size(): number {
    return this.groups.size;
  }

  /**
   * Follows the end of a run: its final event now if it has finished, else through `listener`
   * once it does (which may come before this settles). `leave` stops following.
   */
  async followRun(runId: string, listener: FinishListener): Promise<FinishFollow> {
    if (this.runChannels !== undefined) return this.followOnRunChannel(this.runChannels, runId, listener);
    const key = this.keys.run(runId).run;
    const readAt = ++this.clock;
    const [status, seq, workflow] = await this.redis.hmget(key, "s", "seq", "wf");
    if (status == null || workflow == null) return { kind: "notfound" };
    if (isFinalRunStatus(status)) {
      const event = await this.readFinal(runId, Number(seq));
      return event === undefined ? { kind: "notfound" } : { kind: "finished", event };
    }
    const group = this.join(workflow);
    let listeners = group.runs.get(runId);
    if (listeners === undefined) {
      listeners = new Set();
      group.runs.set(runId, listeners);
    }
    listeners.add(listener);
    const leave = () => {
      const set = group.runs.get(runId);
      if (set === undefined || !set.delete(listener)) return;
      if (set.size === 0) group.runs.delete(runId);
      this.dropIfEmpty(group);
    };
    try {
      await group.ready;
    } catch (err) {
      leave();
      throw err;
    }
    // The run may have finished after the read: its announcement came before the run was followed
    // here (it is remembered), or before the channel was subscribed (look again). A subscription
    // confirmed before the read was sent hears every announcement the read did not see.
    const heard = group.recent.get(runId);
    if (group.confirmedAt > readAt || group.forgotAt > readAt) this.check(group, runId);
    else if (heard !== undefined && heard.at > readAt) this.deliver(group, runId, heard.sequence, 0);
    return { kind: "following", leave };
  }

  /**
   * Follows a run's end on its own channel (a Redis Cluster): the event hub's feed of the run, from
   * the moment it follows the run's list, then the run's status for an end that came before.
   */
  private async followOnRunChannel(
    hub: EventHub,
    runId: string,
    listener: FinishListener,
  ): Promise<FinishFollow> {
    let done = false;
    let leaveFeed: (() => void) | undefined;
    const leave = () => {
      done = true;
      leaveFeed?.();
      leaveFeed = undefined;
    };
    leaveFeed = await hub.join(runId, {
      offer: (events) => {
        const final = events.findLast((e) => e.final);
        if (final === undefined || done) return;
        leave();
        listener(final);
      },
    });
    if (done) leave();
    const [status, seq] = await this.redis.hmget(this.keys.run(runId).run, "s", "seq");
    // Heard on the feed meanwhile: the listener has it.
    if (done) return { kind: "following", leave };
    if (status == null) {
      leave();
      return { kind: "notfound" };
    }
    if (!isFinalRunStatus(status)) return { kind: "following", leave };
    leave();
    const event = await this.readFinal(runId, Number(seq));
    return event === undefined ? { kind: "notfound" } : { kind: "finished", event };
  }

  /** Follows the runs of a workflow as they finish; resolves, once subscribed, with `leave`. */
  async followWorkflow(workflow: string, listener: WorkflowListener): Promise<() => void> {
    const group = this.join(workflow);
    group.followers.add(listener);
    const leave = () => {
      if (group.followers.delete(listener)) this.dropIfEmpty(group);
    };
    try {
      await group.ready;
    } catch (err) {
      leave();
      throw err;
    }
    return leave;
  }

  private join(workflow: string): WorkflowGroup {
    let group = this.groups.get(workflow);
    if (group !== undefined) {
      clearTimeout(group.linger);
      group.linger = undefined;
      return group;
    }
    const created = new WorkflowGroup(workflow, this.keys.workflowDone(workflow));
    group = created;
    this.groups.set(workflow, created);
    this.byChannel.set(created.channel, created);
    created.ready = this.subscriber.subscribe(created.channel).then(() => {
      created.confirmedAt = ++this.clock;
    });
    // Its joiners hear of a failure; the next join subscribes again.
    created.ready.catch(() => {
      if (this.groups.get(workflow) !== created) return;
      this.groups.delete(workflow);
      this.byChannel.delete(created.channel);
    });
    return created;
  }

  private dropIfEmpty(group: WorkflowGroup): void {
    if (!group.empty || this.groups.get(group.name) !== group || group.linger !== undefined) return;
    group.linger = setTimeout(() => this.drop(group), LINGER_MS);
    group.linger.unref();
  }

  private drop(group: WorkflowGroup): void {
    group.linger = undefined;
    if (!group.empty || this.groups.get(group.name) !== group) return;
    this.groups.delete(group.name);
    this.byChannel.delete(group.channel);
    this.subscriber.unsubscribe(group.channel);
  }

  /** Looks whether a followed run has finished, and delivers its final event if it has. */
  private check(group: WorkflowGroup, runId: string): void {
    this.redis.hmget(this.keys.run(runId).run, "s", "seq").then(
      ([status, seq]) => {
        if (status === null) {
          // Expired: its followers learn it as a run that is not found.
          this.deliverMissing(group, runId);
        } else if (isFinalRunStatus(status)) {
          this.deliver(group, runId, Number(seq), 0);
        }
      },
      (err: unknown) => {
        logThrottle(this.logger).warn({ err, runId }, "checking a followed run failed; checking again");
        this.retry(() => {
          if (group.runs.has(runId)) this.check(group, runId);
        }, 1);
      },
    );
  }

  /** Reads a run's final event and hands it to the run's followers and the workflow's. */
  private deliver(group: WorkflowGroup, runId: string, sequence: number, failures: number): void {
    this.readFinal(runId, sequence).then(
      (event) => {
        if (event === undefined) this.deliverMissing(group, runId);
        else this.dispatch(group, runId, event);
      },
      (err: unknown) => {
        logThrottle(this.logger).warn({ err, runId }, "reading a run's final event failed");
        if (failures + 1 >= MAX_READ_FAILURES && !group.runs.has(runId)) return;
        this.retry(() => {
          if (group.runs.has(runId) || group.followers.size > 0)
            this.deliver(group, runId, sequence, failures + 1);
        }, failures + 1);
      },
    );
  }

  /** Remembers an announcement (see WorkflowGroup.recent), forgetting the oldest past {@link RECENT}. */
  private remember(group: WorkflowGroup, runId: string, sequence: number): void {
    group.recent.delete(runId);
    group.recent.set(runId, { sequence, at: ++this.clock });
    if (group.recent.size <= RECENT) return;
    const [oldest, heard] = group.recent.entries().next().value as [string, { at: number }];
    group.recent.delete(oldest);
    group.forgotAt = heard.at;
  }

  /** Hands a run's final event to the run's followers (who then follow it no more) and the workflow's. */
  private dispatch(group: WorkflowGroup, runId: string, event: FeedEvent): void {
    const listeners = group.runs.get(runId);
    if (listeners !== undefined) group.runs.delete(runId);
    for (const listener of listeners ?? []) listener(event);
    for (const follower of group.followers) follower(runId, event);
    this.dropIfEmpty(group);
  }

  /** A followed run whose events are gone (it expired): its followers are told with a missing event. */
  private deliverMissing(group: WorkflowGroup, runId: string): void {
    const listeners = group.runs.get(runId);
    if (listeners === undefined) return;
    group.runs.delete(runId);
    for (const listener of listeners) listener(MISSING);
    this.dropIfEmpty(group);
  }

  private retry(fn: () => void, failures: number): void {
    const timer = setTimeout(fn, Math.min(100 * 2 ** failures, 5000));
    timer.unref();
  }

  /** A run's final event (the event of `sequence`), read once for all its followers. */
  private readFinal(runId: string, sequence: number): Promise<FeedEvent | undefined> {
    const key = `${runId} ${sequence}`;
    let read = this.reads.get(key);
    if (read === undefined) {
      read = this.redis
        .lrange(this.keys.run(runId).events, sequence - 1, sequence - 1)
        .then(([entry]) => {
          if (entry === undefined) return undefined;
          const event = feedEvent(runId, entry, this.maxOutputBytes);
          return event.final ? event : undefined;
        })
        .finally(() => this.reads.delete(key));
      this.reads.set(key, read);
    }
    return read;
  }
}

/**
 * What a run's followers get when the run expired before its final event could be read: no event
 * has sequence 0, so followers tell it apart.
 */
export const MISSING: FeedEvent = {
  sequence: 0,
  final: true,
  get result(): never {
    throw new Error("the MISSING event has no message");
  },
  get frame(): never {
    throw new Error("the MISSING event has no frame");
  },
  size: 0,
};
