import type { Logger } from "pino";
import { logThrottle } from "../../observability/log-throttle.js";
import type { ChannelSubscriber } from "../../redis/channel-subscriber.js";
import { BackoffLoop, type Keys } from "../shared/index.js";
import type { ScheduleFires } from "./schedule-fires.js";
import type { ScheduleStore } from "./schedule-store.js";

/**
 * How long a replica holds the schedules it claimed: a replica that dies mid-fire lets them come due
 * again this much later, and another replica repeats the fire (starting the same run).
 */
export const CLAIM_LEASE_MS = 5000;

/** Schedules claimed at a time. */
const CLAIM_BATCH = 200;

/**
 * Longest sleep of an idle firing loop: the due set is read again at least this often, in case a
 * wake-up message was lost (pub/sub does not keep messages across a reconnection).
 */
const IDLE_CHECK_MS = 30_000;

/** Longest pause after failures in a row (Redis away). */
const MAX_PAUSE_MS = 10_000;

/**
 * Fires the schedules on one replica. Every replica runs one: it sleeps on a timer set to the
 * earliest due time in the due set, wakes when another replica or a call makes an earlier one
 * (a message on the wake channel), claims the due schedules atomically (CLAIM: they get a lease
 * score, so no other replica takes them), runs their fire steps, and sets its timer again. An idle
 * replica does nothing but read the head of the due set every {@link IDLE_CHECK_MS}.
 */
export class FiringLoop {
  private timer: NodeJS.Timeout | undefined;
  /** When the timer fires (this replica's clock); Infinity when none is set. */
  private armedAt = Number.POSITIVE_INFINITY;
  /** The round of claims and fire steps under way (one at a time), which stop() waits for. */
  private ticking: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  private failures = 0;
  /** Redis's clock minus this replica's, as of the last claim. */
  private skewMs = 0;
  private readonly log: ReturnType<typeof logThrottle>;
  /** Whether the listeners are on the subscriber (once: a subscriber cannot take them off). */
  private listening = false;

  constructor(
    private readonly deps: {
      keys: Keys;
      logger: Logger;
      /** The replica's pub/sub subscriber (shared with the event hub). */
      subscriber: ChannelSubscriber;
      store: ScheduleStore;
      fires: ScheduleFires;
    },
  ) {
    this.log = logThrottle(deps.logger);
  }

  /** Subscribes to wake-ups and looks at the due set at once. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const { subscriber, keys } = this.deps;
    if (!this.listening) {
      this.listening = true;
      subscriber.onMessage((channel, message) => {
        if (channel === keys.scheduleWake()) this.arm(Number(message) - this.skewMs);
      });
      // Wake-ups published while the subscription was away are lost: look at the due set again.
      subscriber.onResubscribed(() => this.arm(Date.now()));
    }
    subscriber.subscribe(keys.scheduleWake()).catch((err: unknown) => {
      // The subscriber resubscribes when it reconnects; meanwhile the idle check covers.
      this.log.warn({ err }, "schedules: cannot subscribe to wake-ups");
    });
    this.arm(Date.now());
  }

  /**
   * Stops firing; resolves once the fire steps under way have ended (each is one Redis step, and
   * the loop claims no more once stopped), so that a fire time claimed before shutdown is recorded
   * as fired or comes due again, never left half done by a closing connection.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.armedAt = Number.POSITIVE_INFINITY;
    this.deps.subscriber.unsubscribe(this.deps.keys.scheduleWake());
    await this.ticking;
  }

  /** Sets the timer to `at` (this replica's clock) unless it is set sooner already. */
  private arm(at: number): void {
    if (this.stopped || !Number.isFinite(at) || at >= this.armedAt) return;
    clearTimeout(this.timer);
    this.armedAt = at;
    this.timer = setTimeout(() => this.tick(), Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  /** Runs a round, or, while one is under way, has it look again once it ends; then sleeps until the next due time. */
  private tick(): void {
    this.armedAt = Number.POSITIVE_INFINITY;
    if (this.ticking !== undefined) {
      this.again = true;
      return;
    }
    this.ticking = this.round().then((due) => {
      this.ticking = undefined;
      let next = due;
      if (this.again) {
        this.again = false;
        next = Date.now();
      }
      this.arm(next);
    });
  }

  /** Claims and fires what is due, batch after batch; resolves with when to look next (never rejects). */
  private async round(): Promise<number> {
    let next = Date.now() + IDLE_CHECK_MS;
    try {
      for (;;) {
        const claim = await this.deps.store.claim(CLAIM_LEASE_MS, CLAIM_BATCH);
        this.skewMs = claim.now - Date.now();
        if (claim.ids.length > 0) await this.fireAll(claim.ids, claim.now, claim.lease);
        if (claim.ids.length < CLAIM_BATCH || this.stopped) {
          // The head as of the claim; steps since moved schedules later (or woke us if sooner).
          const head = claim.ids.length > 0 ? await this.deps.store.head() : claim.head;
          if (head !== undefined) next = Math.min(next, head - this.skewMs);
          break;
        }
      }
      this.failures = 0;
    } catch (err) {
      this.failures++;
      const pause = BackoffLoop.pause(500, MAX_PAUSE_MS, this.failures);
      this.log.warn({ err, retryInMs: pause }, "schedules: claiming due schedules failed");
      next = Date.now() + pause;
    }
    return next;
  }

  /** Runs the fire steps of claimed schedules together; one that fails comes due again when its lease ends. */
  private async fireAll(ids: string[], now: number, lease: number): Promise<void> {
    const results = await Promise.allSettled(
      ids.map((id) => this.deps.fires.step(id, now, lease, this.skewMs)),
    );
    for (const [i, r] of results.entries()) {
      if (r.status === "rejected") {
        this.log.warn(
          { err: r.reason, schedule: ids[i], retryInMs: CLAIM_LEASE_MS },
          "schedules: a fire step failed; it is tried again when its claim ends",
        );
      }
    }
  }
}
