import { randomUUID } from "node:crypto";
import type { Job, Worker } from "bullmq";
import type { Logger } from "pino";
import type { TaskJobData } from "./task-queues.js";

/** A job fetched and locked for a poll; `token` is its BullMQ lock token. */
export interface FetchedJob {
  job: Job<TaskJobData>;
  token: string;
}

/** Most jobs fetched at once without blocking (one Redis round trip for all of them). */
const BURST = 16;

interface Waiter {
  signal: AbortSignal;
  deliver: (fetched: FetchedJob | undefined) => void;
}

/**
 * Hands jobs of one task queue to long polls. BullMQ allows one blocking wait
 * per Worker, so each replica runs at most one fetch loop per queue, and only
 * while polls are waiting: an idle queue costs one blocked Redis connection
 * and no traffic. Polls are served first come, first served.
 */
export class QueueDispatcher {
  private readonly waiters: Waiter[] = [];
  private looping = false;
  private closed = false;
  private holdUntil = 0;

  constructor(
    private readonly queue: string,
    private readonly worker: () => Worker,
    private readonly logger: Logger,
  ) {}

  /** Waits for a job until the signal aborts; resolves undefined then. */
  take(signal: AbortSignal): Promise<FetchedJob | undefined> {
    if (signal.aborted || this.closed) return Promise.resolve(undefined);
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
    let fetched = 0;
    while (fetched < max && !this.closed && this.holdUntil <= Date.now()) {
      const round = await this.fetchMany(Math.min(max - fetched, BURST));
      fetched += round.jobs.length;
      if (round.jobs.length > 0) take(round.jobs);
      if (round.short) break;
    }
  }

  /** Stops fetching for a while (the queue's rate limit is reached). */
  holdFor(ms: number): void {
    this.holdUntil = Math.max(this.holdUntil, Date.now() + ms);
  }

  /** Stops fetching and releases every waiting poll empty-handed. */
  close(): void {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) waiter.deliver(undefined);
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
      for (const fetched of round.jobs) {
        const waiter = this.nextWaiter();
        if (waiter !== undefined) {
          waiter.deliver(fetched);
          continue;
        }
        await fetched.job
          .moveToWait(fetched.token)
          .catch((err) => this.logger.warn({ err, jobId: fetched.job.id }, "could not requeue job"));
      }
      if (round.short) return;
    }
  }

  private async fetchMany(n: number): Promise<Round> {
    const worker = this.worker();
    const results = await Promise.all(
      Array.from({ length: n }, async (): Promise<FetchedJob | undefined> => {
        const token: string = randomUUID();
        try {
          const job = (await worker.getNextJob(token, { block: false })) as Job<TaskJobData> | undefined;
          return job === undefined ? undefined : { job, token };
        } catch (err) {
          this.logger.warn({ err, queue: this.queue }, "fetching a job failed");
          return undefined;
        }
      }),
    );
    const jobs = results.filter((r): r is FetchedJob => r !== undefined);
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
        const worker = this.worker();
        const token = randomUUID();
        let job: Job<TaskJobData> | undefined;
        try {
          job = await worker.getNextJob(token, { block: true });
          failures = 0;
        } catch (err) {
          failures++;
          this.logger.warn({ err, queue: this.queue }, "fetching a job failed; retrying");
          await pause(Math.min(100 * 2 ** failures, 5000));
          continue;
        }
        if (job === undefined) {
          // Rate limited: BullMQ returns at once; wait out the limit rather than spin.
          const limitUntil = (worker as unknown as { limitUntil: number }).limitUntil;
          if (limitUntil > Date.now()) await pause(Math.min(limitUntil - Date.now(), 1000));
          continue;
        }
        const waiter = this.nextWaiter();
        if (waiter === undefined) {
          await job
            .moveToWait(token)
            .catch((err) => this.logger.warn({ err, jobId: job.id }, "could not requeue job"));
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
