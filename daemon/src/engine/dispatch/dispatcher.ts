import { randomUUID } from "node:crypto";
import type { Job, Worker } from "bullmq";
import type { Logger } from "pino";
import { logThrottle } from "../../observability/log-throttle.js";
import { isRedisUnavailableError } from "../../redis/redis.js";
import type { FetchedJob, TaskJobData } from "./jobs.js";

/** Most jobs fetched at once without blocking (one Redis round trip for all of them). */
const BURST = 16;

/**
 * How recent this replica's last poll of a queue must be for completions to
 * fetch jobs for it: a replica that only receives completions (its workers
 * poll another one) fetches nothing it would have to put back.
 */
const DEMAND_WINDOW_MS = 1000;

/** How long {@link QueueDispatcher.putBack} keeps trying while Redis is away (a lock outlives it). */
const PUT_BACK_GIVE_UP_MS = 60_000;

/** Longest a batch poll waits for the jobs completions in flight are fetching before it fetches its own. */
const OFFERS_WAIT_MS = 20;

interface Waiter {
  signal: AbortSignal;
  deliver: (fetched: FetchedJob | undefined) => void;
}

/** A completion's fetch of the next job, announced to the dispatcher before it is made. */
export interface PendingOffer {
  /** Hands over what the completion fetched; undefined: the queue had nothing waiting. */
  fetched(job: FetchedJob | undefined): void;
  /** The completion fetched nothing (it failed, or its job was not completed). */
  abandon(): void;
}

/** How this replica's dispatchers came by their jobs (counters, for /metrics). */
export interface DispatchStats {
  /** Jobs fetched for polls (BullMQ's moveToActive). */
  fetchedForPolls: number;
  /** Jobs fetched by completions (moveToFinished) and held for polls. */
  fetchedByCompletions: number;
  /** Of those, jobs no poll took, put back in their queue. */
  heldReturned: number;
}

/** What the dispatcher needs of its queue's BullMQ side. */
export interface DispatcherQueue {
  /** The queue's manual Worker, which fetches jobs. */
  worker(): Worker;
  /** Extends held jobs' locks to a lease's; returns those whose lock was still held. */
  extendLocks(jobs: FetchedJob[]): Promise<FetchedJob[]>;
}

/**
 * Hands jobs of one task queue to long polls. BullMQ allows one blocking wait
 * per Worker, so each replica runs at most one fetch loop per queue, and only
 * while polls are waiting: an idle queue costs one blocked Redis connection
 * and no traffic. Polls are served first come, first served.
 *
 * While the queue has a backlog, a completion fetches the next job in the
 * script that completes its own (as a BullMQ Worker does) and offers it here:
 * it is held, under a short lock, for the next poll, and goes back to the
 * queue when no poll takes it within `holdMs`. A batch poll that arrives
 * while completions are fetching waits for their jobs (briefly) before it
 * fetches more itself.
 */
export class QueueDispatcher {
  private readonly waiters: Waiter[] = [];
  private looping = false;
  private closed = false;
  private holdUntil = 0;
  private readonly held: FetchedJob[] = [];
  private holdTimer: NodeJS.Timeout | undefined;
  private backlog = false;
  /** When a poll last asked this dispatcher for jobs. */
  private lastDemandAt = 0;
  /** Completions in flight that will offer a job (or report none). */
  private offering = 0;
  /** A batch poll waiting for offers: woken once it can take `need` jobs or no offer is in flight. */
  private offersWanted: { need: number; wake: () => void } | undefined;

  constructor(
    private readonly queue: string,
    private readonly source: DispatcherQueue,
    private readonly logger: Logger,
    /** How long a job a completion fetched waits here for a poll before it goes back. */
    private readonly holdMs: number,
    private readonly stats: DispatchStats,
  ) {}

  /**
   * Whether completions should fetch the next job for this replica's polls:
   * the last fetches found more jobs waiting than they took, and polls come
   * here.
   */
  get backlogged(): boolean {
    if (!this.backlog || this.closed) return false;
    const now = Date.now();
    return this.holdUntil <= now && now - this.lastDemandAt < DEMAND_WINDOW_MS;
  }

  /** Announces a completion that will fetch the next job; it settles the offer once. */
  expectOffer(): PendingOffer {
    this.offering++;
    let settled = false;
    const settle = (fetched: FetchedJob | undefined, queueEmpty: boolean) => {
      if (settled) return;
      settled = true;
      this.offering--;
      if (fetched !== undefined) this.offer(fetched);
      else if (queueEmpty) this.backlog = false;
      const wanted = this.offersWanted;
      if (wanted !== undefined && (this.offering === 0 || this.held.length >= wanted.need)) wanted.wake();
    };
    return {
      fetched: (job) => settle(job, job === undefined),
      abandon: () => settle(undefined, false),
    };
  }

  private offer(fetched: FetchedJob): void {
    this.stats.fetchedByCompletions++;
    if (this.closed || this.holdUntil > Date.now()) {
      void this.returnHeld([fetched]);
      return;
    }
    this.held.push(fetched);
    this.holdTimer ??= setTimeout(() => void this.returnAllHeld(), this.holdMs);
    if (this.waiters.length > 0) void this.serveHeld();
  }

  /** Waits for a job until the signal aborts; resolves undefined then. */
  async take(signal: AbortSignal): Promise<FetchedJob | undefined> {
    if (signal.aborted || this.closed) return undefined;
    this.lastDemandAt = Date.now();
    if (this.held.length > 0 && this.waiters.length === 0) {
      const [fetched] = await this.claimHeld(1);
      if (fetched !== undefined) return fetched;
      if (signal.aborted || this.closed) return undefined;
    }
    return new Promise((resolve) => {
      const waiter: Waiter = {
        signal,
        deliver: (fetched) => {
          signal.removeEventListener("abort", onAbort);
          resolve(fetched);
        },
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(undefined);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
      if (!this.looping) void this.loop();
    });
  }

  /**
   * Whether no poll waits here, no job is held and no completion is fetching
   * one: the dispatcher can be closed. Its loop may still be in a blocking
   * fetch, which closing the queue's Worker ends (a job it fetched then goes
   * back to the queue).
   */
  get idle(): boolean {
    return this.waiters.length === 0 && this.held.length === 0 && this.offering === 0;
  }

  /** Whether polls are waiting here for a job (a new poll must then queue behind them). */
  get busy(): boolean {
    return this.waiters.length > 0;
  }

  /**
   * Fetches up to `max` jobs already waiting, without blocking, in rounds of
   * parallel fetches, handing each round to `take` as it arrives: fewer (or
   * none) when the queue has fewer, is paused, or is at its concurrency or
   * rate limit.
   */
  async grab(max: number, take: (jobs: FetchedJob[]) => void): Promise<void> {
    this.lastDemandAt = Date.now();
    let fetched = 0;
    if (this.offering > 0 && this.held.length < max && this.offersWanted === undefined) {
      await this.offers(max);
    }
    if (this.held.length > 0) {
      const jobs = await this.claimHeld(max);
      fetched += jobs.length;
      if (jobs.length > 0) take(jobs);
    }
    // A queue found empty last time is probed with one fetch: a poll that comes back after each
    // task (a Work stream) would otherwise send a burst of fetches that find nothing every time.
    let burst = this.backlog ? BURST : 1;
    while (fetched < max && !this.closed && this.holdUntil <= Date.now()) {
      const round = await this.fetchMany(Math.min(max - fetched, burst));
      this.backlog = !round.short;
      fetched += round.jobs.length;
      if (round.jobs.length > 0) take(round.jobs);
      if (round.short) break;
      burst = BURST;
    }
  }

  /** Stops fetching for a while (the queue's rate limit is reached). */
  holdFor(ms: number): void {
    this.holdUntil = Math.max(this.holdUntil, Date.now() + ms);
    void this.returnAllHeld();
  }

  /** Stops fetching, releases every waiting poll empty-handed and puts held jobs back. */
  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) waiter.deliver(undefined);
    await this.returnAllHeld();
  }

  /** Resolves once `need` jobs are held, no offer is in flight, or {@link OFFERS_WAIT_MS} passed. */
  private offers(need: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => wake(), OFFERS_WAIT_MS);
      const wake = () => {
        clearTimeout(timer);
        this.offersWanted = undefined;
        resolve();
      };
      this.offersWanted = { need, wake };
    });
  }

  /** Takes up to `n` held jobs and extends their locks to a lease's (one round trip). */
  private async claimHeld(n: number): Promise<FetchedJob[]> {
    const jobs = this.held.splice(0, n);
    if (this.held.length === 0) {
      clearTimeout(this.holdTimer);
      this.holdTimer = undefined;
    }
    if (jobs.length === 0) return jobs;
    try {
      // A job whose short lock ran out is left to the stalled checker, which puts it back.
      return await this.source.extendLocks(jobs);
    } catch (err) {
      logThrottle(this.logger).warn({ err, queue: this.queue }, "extending held jobs' locks failed");
      await this.returnHeld(jobs);
      return [];
    }
  }

  /** Hands held jobs to the polls waiting. */
  private async serveHeld(): Promise<void> {
    const jobs = await this.claimHeld(this.waiters.length);
    for (const fetched of jobs) {
      const waiter = this.nextWaiter();
      if (waiter !== undefined) waiter.deliver(fetched);
      else await this.returnHeld([fetched]);
    }
  }

  /**
   * Puts a fetched job back in its queue, unused, once Redis takes the call: tried again with a
   * backoff while Redis is away, until the job's lock is gone (the stalled checker gave it back,
   * or another replica has it) or {@link PUT_BACK_GIVE_UP_MS} passed. Not awaited by callers.
   */
  putBack({ job, token }: FetchedJob): void {
    const started = Date.now();
    const attempt = async (n: number): Promise<void> => {
      try {
        await job.moveToWait(token);
      } catch (err) {
        if (!isRedisUnavailableError(err) || Date.now() - started > PUT_BACK_GIVE_UP_MS) {
          this.logger.debug({ err, jobId: job.id, queue: this.queue }, "job not put back: its lock is gone");
          return;
        }
        await pause(Math.min(100 * 2 ** n, 2000));
        await attempt(n + 1);
      }
    };
    void attempt(0);
  }

  /** Puts every held job back in its queue. */
  private returnAllHeld(): Promise<void> {
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    return this.returnHeld(this.held.splice(0));
  }

  /** Puts held jobs back in their queue's wait list. */
  private returnHeld(jobs: FetchedJob[]): Promise<void> {
    this.stats.heldReturned += jobs.length;
    return this.requeue(jobs);
  }

  /** Puts fetched jobs back in their queue's wait list. */
  private async requeue(jobs: FetchedJob[]): Promise<void> {
    await Promise.all(
      jobs.map(({ job, token }) =>
        job.moveToWait(token).catch((err: Error) => {
          // Its short lock ran out first (a slow moment): the stalled check has given it back.
          if (err.message.startsWith("Missing lock")) {
            this.logger.debug({ err, jobId: job.id }, "job already back in its queue");
          } else {
            logThrottle(this.logger).warn({ err, jobId: job.id }, "could not requeue job");
          }
        }),
      ),
    );
  }

  private nextWaiter(): Waiter | undefined {
    let waiter = this.waiters.shift();
    while (waiter?.signal.aborted) waiter = this.waiters.shift();
    return waiter;
  }

  /** Non-blocking fetches in parallel, for the waiting polls; surplus jobs go back. */
  private async serveWaiting(): Promise<void> {
    while (this.waiters.length > 0 && !this.closed && this.holdUntil <= Date.now()) {
      const round = await this.fetchMany(Math.min(this.waiters.length, BURST));
      this.backlog = !round.short;
      for (const fetched of round.jobs) {
        const waiter = this.nextWaiter();
        if (waiter !== undefined) {
          waiter.deliver(fetched);
          continue;
        }
        await this.requeue([fetched]);
      }
      if (round.short) return;
    }
  }

  private async fetchMany(n: number): Promise<Round> {
    const worker = this.source.worker();
    const results = await Promise.all(
      Array.from({ length: n }, async (): Promise<FetchedJob | undefined> => {
        const token: string = randomUUID();
        try {
          const job = (await worker.getNextJob(token, { block: false })) as Job<TaskJobData> | undefined;
          return job === undefined ? undefined : { job, token };
        } catch (err) {
          logThrottle(this.logger).warn({ err, queue: this.queue }, "fetching a job failed");
          return undefined;
        }
      }),
    );
    const jobs = results.filter((r): r is FetchedJob => r !== undefined);
    this.stats.fetchedForPolls += jobs.length;
    return { jobs, short: jobs.length < n };
  }

  private async loop(): Promise<void> {
    this.looping = true;
    let failures = 0;
    try {
      while (this.waiters.length > 0 && !this.closed) {
        const hold = this.holdUntil - Date.now();
        if (hold > 0) {
          await pause(hold);
          continue;
        }
        const worker = this.source.worker();
        const token = randomUUID();
        let job: Job<TaskJobData> | undefined;
        try {
          job = await worker.getNextJob(token, { block: true });
          failures = 0;
        } catch (err) {
          // Closing the queue's Worker ends a blocking fetch with an error.
          if (this.closed) break;
          failures++;
          logThrottle(this.logger).warn({ err, queue: this.queue }, "fetching a job failed; retrying");
          await pause(Math.min(100 * 2 ** failures, 5000));
          continue;
        }
        if (job === undefined) {
          // Rate limited: BullMQ returns at once; wait out the limit rather than spin.
          const limitUntil = (worker as unknown as { limitUntil: number }).limitUntil;
          if (limitUntil > Date.now()) await pause(Math.min(limitUntil - Date.now(), 1000));
          continue;
        }
        this.stats.fetchedForPolls++;
        const waiter = this.nextWaiter();
        if (waiter === undefined) {
          await this.requeue([{ job, token }]);
          continue;
        }
        waiter.deliver({ job, token });
        // More polls waiting: serve them from what is already queued, in one round trip.
        if (this.waiters.length > 0) await this.serveWaiting();
      }
    } finally {
      this.looping = false;
      // A poll may have arrived between the loop's last check and now.
      if (this.waiters.length > 0 && !this.closed) void this.loop();
    }
  }
}

interface Round {
  jobs: FetchedJob[];
  /** Some fetch came back empty: the queue has no more for now. */
  short: boolean;
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
