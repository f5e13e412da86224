import { randomUUID } from "node:crypto";
import type { Job, Worker } from "bullmq";
import type { Logger } from "pino";
import type { TaskJobData } from "./task-queues.js";

/** A job fetched and locked for a poll; `token` is its BullMQ lock token. */
export interface FetchedJob {
  job: Job<TaskJobData>;
  token: string;
}

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
      }
    } finally {
      this.looping = false;
      // A poll may have arrived between the loop's last check and now.
      if (this.waiters.length > 0 && !this.closed) void this.loop();
    }
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
