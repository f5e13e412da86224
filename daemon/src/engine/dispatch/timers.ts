import { DelayedError, type Job, Queue, Worker } from "bullmq";
import type { Logger } from "pino";
import { logThrottle } from "../../observability/log-throttle.js";
import type { RedisClient } from "../../redis/redis.js";
import type { Keys } from "../shared/index.js";

/** Attempts of a timer's handler before it is given up. */
const TIMER_ATTEMPTS = 10;

/** Pause of the timer worker's fetch loop after a connection error. */
const RUN_RETRY_DELAY_MS = 1000;

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
 * nothing when the run moved on (the task started, the run finished), and
 * return a later time when the deadline moved (a resumed run's tasks are
 * queued again, its run timeout starts again): the timer then waits again
 * until that time, under the same id.
 *
 * On a Redis Cluster the queue is sharded like the sets every run enters
 * (Keys.timerPrefix): a run's timers go to its shard's queue, so that no
 * single slot carries every run's timers; each replica runs a worker per shard.
 */
export class Timers {
  private readonly queues: Queue<TimerData>[] = [];
  private readonly workers: Worker<TimerData>[] = [];

  /**
   * @param connection the timer Workers' connection, which waits out an outage.
   * @param failFast the timer Queues' connection, whose commands fail while Redis is away (a
   *   timer a step could not schedule is scheduled again by the reconciler).
   */
  constructor(
    connection: RedisClient,
    failFast: RedisClient,
    private readonly keys: Keys,
    logger: Logger,
    fire: (timer: TimerData) => Promise<number | undefined>,
  ) {
    // The Queues and Workers re-emit every error of their connections (one per reconnection
    // attempt while Redis is down): throttled, and counted by the outage once it is reported.
    const log = logThrottle(logger);
    const processor = async (job: Job<TimerData>, token?: string) => {
      const later = await fire(job.data);
      if (later === undefined || later <= Date.now()) return;
      await job.moveToDelayed(later, token);
      throw new DelayedError();
    };
    for (let shard = 0; shard < keys.shards; shard++) {
      const prefix = keys.timerPrefix(shard);
      const queue = new Queue<TimerData>("timers", { connection: failFast, prefix });
      queue.on("error", (err) => log.warn({ err }, "timer queue error"));
      const worker = new Worker<TimerData>("timers", processor, {
        connection,
        prefix,
        concurrency: 16,
        drainDelay: 5,
        // BullMQ waits this long before fetching again after a connection error (15 s by default):
        // timers would fire that late once Redis is back. Its commands wait for the reconnection.
        runRetryDelay: RUN_RETRY_DELAY_MS,
        // A timer whose lock expired during an outage comes back rather than failing for good;
        // handlers are idempotent.
        maxStalledCount: 100,
      });
      worker.on("error", (err) => log.warn({ err }, "timer worker error"));
      worker.on("failed", (job, err) => {
        if (job !== undefined && job.attemptsMade < (job.opts.attempts ?? 1)) {
          log.warn({ err, timer: job.data, attempt: job.attemptsMade }, "timer failed; retrying");
        } else {
          log.error({ err, timer: job?.data }, "timer failed for good: it will not fire");
        }
      });
      this.queues.push(queue);
      this.workers.push(worker);
    }
  }

  /** Schedules timers; one already scheduled under the same id is kept. */
  async schedule(timers: { data: TimerData; delayMs: number }[]): Promise<void> {
    if (timers.length === 0) return;
    const byShard = new Map<number, { data: TimerData; delayMs: number }[]>();
    for (const timer of timers) {
      const shard = this.keys.shardOf(timer.data.runId);
      const list = byShard.get(shard);
      if (list === undefined) byShard.set(shard, [timer]);
      else list.push(timer);
    }
    await Promise.all(
      [...byShard].map(([shard, list]) =>
        this.queueOf(shard).addBulk(
          list.map(({ data, delayMs }) => ({
            name: data.kind,
            data,
            opts: {
              jobId: timerJobId(data),
              delay: delayMs,
              // 0.5 s doubling: nine retries span about four minutes, a Redis outage included.
              attempts: TIMER_ATTEMPTS,
              backoff: { type: "exponential", delay: 500 },
              removeOnComplete: true,
              removeOnFail: { age: 24 * 3600 },
            },
          })),
        ),
      ),
    );
  }

  /**
   * Removes timers that have not fired (a resumed run arms them again); one firing at that moment
   * stays, and its handler finds that its deadline moved.
   */
  async remove(timers: TimerData[]): Promise<void> {
    await Promise.all(
      timers.map((data) => this.queueOf(this.keys.shardOf(data.runId)).remove(timerJobId(data))),
    );
  }

  /** The Queue of a shard of the timers. */
  private queueOf(shard: number): Queue<TimerData> {
    return this.queues[shard] as Queue<TimerData>;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.workers.map((w) => w.close(true)));
    await Promise.allSettled(this.queues.map((q) => q.close()));
  }
}

/** The deterministic job id of a timer: one per run timeout, one per task's schedule-to-start. */
function timerJobId(data: TimerData): string {
  return [data.kind, data.runId, data.taskId].filter((p) => p !== undefined).join(".");
}
