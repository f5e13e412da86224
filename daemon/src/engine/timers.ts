import { type Job, Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Keys } from "./keys.js";

/** A timer: what fires, for which run (and task). */
export interface TimerData {
  kind: "schedule-to-start" | "run-timeout";
  runId: string;
  taskId?: string;
}

/**
 * Timeouts that must fire even if every replica restarts: each is a delayed
 * BullMQ job with a deterministic id in one queue, handled by whichever
 * replica's timer worker gets it. Handlers are idempotent steps that do
 * nothing when the run moved on (the task started, the run finished).
 */
export class Timers {
  private readonly queue: Queue<TimerData>;
  private readonly worker: Worker<TimerData>;

  constructor(connection: Redis, keys: Keys, logger: Logger, fire: (timer: TimerData) => Promise<void>) {
    const prefix = keys.queuePrefix("_timers");
    this.queue = new Queue<TimerData>("timers", { connection, prefix });
    this.queue.on("error", (err) => logger.warn({ err }, "timer queue error"));
    this.worker = new Worker<TimerData>("timers", (job: Job<TimerData>) => fire(job.data), {
      connection,
      prefix,
      concurrency: 16,
      drainDelay: 5,
    });
    this.worker.on("error", (err) => logger.warn({ err }, "timer worker error"));
    this.worker.on("failed", (job, err) => logger.warn({ err, timer: job?.data }, "timer failed; retrying"));
  }

  /** Schedules timers; one already scheduled under the same id is kept. */
  async schedule(timers: { data: TimerData; delayMs: number }[]): Promise<void> {
    if (timers.length === 0) return;
    await this.queue.addBulk(
      timers.map(({ data, delayMs }) => ({
        name: data.kind,
        data,
        opts: {
          jobId: [data.kind, data.runId, data.taskId].filter((p) => p !== undefined).join("."),
          delay: delayMs,
          attempts: 5,
          backoff: { type: "exponential", delay: 500 },
          removeOnComplete: true,
          removeOnFail: { age: 24 * 3600 },
        },
      })),
    );
  }

  async close(): Promise<void> {
    await this.worker.close(true);
    await this.queue.close();
  }
}
