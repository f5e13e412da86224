import {
  Job,
  type JobJson,
  type JobsOptions,
  Queue,
  type QueueOptions,
  UnrecoverableError,
  Worker,
} from "bullmq";
import type { Logger } from "pino";
import { logThrottle } from "../../observability/log-throttle.js";
import type { RedisClient } from "../../redis/redis.js";
import { jobIdOf, type Keys } from "../shared/index.js";
import type { FetchedJob, TaskJobData, TaskJobSpec } from "./jobs.js";

/** Extra time a BullMQ lock outlives the lease it backs, so that Weft's own deadline decides first. */
export const LOCK_GRACE_MS = 1000;

/** Settings of the BullMQ side of the daemon. */
export interface TaskQueueSettings {
  /** How long a fetched job stays locked before a heartbeat must extend it. */
  lockDurationMs: number;
  /**
   * How long a fetched job stays locked until its task starts (and its lock is
   * extended to the lease's): how long it stays out of reach when the replica
   * holding it dies.
   */
  heldLockMs: number;
  /** How often each replica looks for jobs whose lock expired. */
  stalledIntervalMs: number;
  /** How long a blocking fetch waits before it returns empty (seconds). */
  drainDelaySeconds: number;
}

/** An error whose retry delay was decided by the daemon; read by the backoff strategy. */
class RetryError extends Error {
  constructor(
    message: string,
    readonly delayMs: number,
  ) {
    super(message);
  }
}

const KEEP_COMPLETED = { age: 3600, count: 10_000 };
const KEEP_FAILED = { age: 24 * 3600, count: 10_000 };

/**
 * Entries BullMQ keeps in a queue's event stream (its default is 10,000, about
 * 1 MiB per queue): Weft reads none of them (run events are its own), and
 * BullMQ's tools (QueueEvents, dashboards) still see the latest.
 */
export const QUEUE_EVENTS_KEPT = 1000;

/**
 * The BullMQ queues of every task queue, one `Queue` (to add and remove jobs)
 * and one manual `Worker` (to fetch, lock, complete and fail them) per task
 * queue name, created on first use. The Worker never runs a processor: jobs
 * are handed to polling workers by the dispatcher, and their BullMQ lock is
 * the task's lease, extended by heartbeats.
 */
export class TaskQueues {
  private readonly queues = new Map<string, Queue>();
  private readonly workers = new Map<string, Worker>();
  /** When each open queue was last used (its Queue or its Worker asked for), epoch ms. */
  private readonly usedAt = new Map<string, number>();

  /**
   * @param connection the Workers' connection: it waits out an outage (BullMQ's blocking fetch
   *   needs that), so a job move issued while Redis is away happens once it is back.
   * @param failFast the Queues' connection (adds, removals, reads): its commands fail within about
   *   a second while Redis is away, so that no call of a client hangs through an outage.
   */
  constructor(
    private readonly connection: RedisClient,
    private readonly failFast: RedisClient,
    private readonly keys: Keys,
    private readonly settings: TaskQueueSettings,
    private readonly logger: Logger,
    private readonly onStalled: (queue: string, jobId: string) => void,
  ) {}

  /** The `Queue` of a task queue. */
  queue(name: string): Queue {
    this.usedAt.set(name, Date.now());
    return this.openQueue(name);
  }

  private openQueue(name: string): Queue {
    let queue = this.queues.get(name);
    if (queue === undefined) {
      // BullMQ locks the job a completion fetches (moveToFinished's fetchNext) for the lockDuration
      // of the completing job's queue object: jobs completed through this Queue fetch their
      // successor under the short held lock.
      const options: QueueOptions & { lockDuration: number } = {
        connection: this.failFast,
        prefix: this.keys.queuePrefix(name),
        lockDuration: this.settings.heldLockMs,
        streams: { events: { maxLen: QUEUE_EVENTS_KEPT } },
      };
      queue = new Queue(name, options);
      queue.on("error", (err) => logThrottle(this.logger).warn({ err, queue: name }, "BullMQ queue error"));
      this.queues.set(name, queue);
    }
    return queue;
  }

  /** The manual `Worker` of a task queue; starts its stalled-job checker. */
  worker(name: string): Worker {
    this.usedAt.set(name, Date.now());
    let worker = this.workers.get(name);
    if (worker === undefined) {
      worker = new Worker(name, undefined, {
        connection: this.connection,
        prefix: this.keys.queuePrefix(name),
        autorun: false,
        // Jobs are fetched under the short held lock; starting a task extends it to the lease's.
        lockDuration: this.settings.heldLockMs,
        stalledInterval: this.settings.stalledIntervalMs,
        drainDelay: this.settings.drainDelaySeconds,
        // Weft counts attempts itself; a stalled job always comes back to be re-leased.
        maxStalledCount: 1_000_000,
        settings: { backoffStrategy: (_n, _type, err) => (err instanceof RetryError ? err.delayMs : 0) },
      });
      const w = worker;
      w.on("error", (err) => logThrottle(this.logger).warn({ err, queue: name }, "BullMQ worker error"));
      w.on("stalled", (jobId) => this.onStalled(name, jobId));
      this.workers.set(name, w);
      w.startStalledCheckTimer().catch((err) =>
        logThrottle(this.logger).error({ err, queue: name }, "stalled checker failed"),
      );
    }
    return worker;
  }

  /** Adds jobs; a job whose id exists already is left as it is. */
  async add(specs: TaskJobSpec[]): Promise<void> {
    const byQueue = new Map<string, TaskJobSpec[]>();
    for (const spec of specs) {
      const list = byQueue.get(spec.queue);
      if (list === undefined) byQueue.set(spec.queue, [spec]);
      else list.push(spec);
    }
    await Promise.all(
      [...byQueue].map(async ([name, list]) => {
        const queue = this.queue(name);
        // One job goes without addBulk's pipeline: ioredis copies every BullMQ script onto each
        // pipeline it makes (≈ 15 KiB of garbage per call), and most steps make one task ready.
        if (list.length === 1) {
          const job = jobOf(list[0]!);
          await queue.add(job.name, job.data, job.opts);
        } else {
          await queue.addBulk(list.map(jobOf));
        }
      }),
    );
  }

  /**
   * A handle on a job this replica may not have fetched itself, for the
   * calls that need only its id, options and lock token. BullMQ reads the
   * options of `owner` (the queue's Worker, unless given) in those calls.
   */
  handle(spec: TaskJobSpec, owner: Queue | Worker = this.worker(spec.queue)): Job<TaskJobData> {
    return new Job(
      owner,
      spec.handler,
      {} as TaskJobData,
      jobOptions(spec),
      jobIdOf(spec.runId, spec.taskId),
    );
  }

  /** Marks a locked job completed without fetching another. */
  async complete(spec: TaskJobSpec, token: string): Promise<void> {
    await this.handle(spec).moveToCompleted(null, token, false);
  }

  /**
   * Marks a locked job completed and, in the same script, fetches the next
   * job of its queue, locked with the same token for `heldLockMs` only;
   * undefined when none is waiting (or the queue is paused or at its
   * concurrency limit).
   */
  async completeAndFetch(spec: TaskJobSpec, token: string): Promise<FetchedJob | undefined> {
    // Through the Queue object: its lockDuration is the held lock (see `queue`).
    const job = this.handle(spec, this.queue(spec.queue));
    const next = (await job.moveToCompleted(null, token, true)) as unknown;
    if (!Array.isArray(next) || !next[0] || typeof next[1] !== "string") return undefined;
    return { job: Job.fromJSON<TaskJobData>(this.worker(spec.queue), next[0] as JobJson, next[1]), token };
  }

  /**
   * Extends the locks of fetched jobs of one queue to `lockDurationMs`;
   * returns those whose lock was still held.
   */
  async extendLocks(queue: string, jobs: FetchedJob[]): Promise<FetchedJob[]> {
    const failed = await this.worker(queue).extendJobLocks(
      jobs.map(({ job }) => job.id ?? ""),
      jobs.map(({ token }) => token),
      this.settings.lockDurationMs,
    );
    if (failed.length === 0) return jobs;
    const lost = new Set(failed);
    return jobs.filter(({ job }) => !lost.has(job.id ?? ""));
  }

  /** Fails a locked job: retried after `delayMs` when `retry`, else failed for good. */
  async fail(
    spec: TaskJobSpec,
    token: string,
    message: string,
    retry: boolean,
    delayMs: number,
  ): Promise<void> {
    const job = this.handle(spec);
    if (retry) {
      // The handle does not know how many attempts BullMQ counted; the daemon decided.
      job.opts.attempts = Number.MAX_SAFE_INTEGER;
      await job.moveToFailed(new RetryError(message, delayMs), token, false);
    } else {
      await job.moveToFailed(new UnrecoverableError(message), token, false);
    }
  }

  /** Extends a job's lock; false when the lock is held no more. */
  async extendLock(spec: TaskJobSpec, token: string, durationMs: number): Promise<boolean> {
    const failed = await this.worker(spec.queue).extendJobLocks(
      [jobIdOf(spec.runId, spec.taskId)],
      [token],
      durationMs,
    );
    return failed.length === 0;
  }

  /**
   * Removes a job that is not locked (waiting, delayed, or finished); ignores one that is gone.
   * False when the job is locked, and stays.
   */
  async remove(queue: string, jobId: string): Promise<boolean> {
    return (await this.queue(queue).remove(jobId)) === 1;
  }

  /** A job's BullMQ state ("unknown" when there is no such job). */
  async state(queue: string, jobId: string): Promise<string> {
    return this.queue(queue).getJobState(jobId);
  }

  /** Whether a job exists in any state. */
  async exists(queue: string, jobId: string): Promise<boolean> {
    return (await this.state(queue, jobId)) !== "unknown";
  }

  /** How many task queues have a Worker open here: each holds a blocking Redis connection. */
  get workerCount(): number {
    return this.workers.size;
  }

  /** Whether a task queue has its Worker open here. */
  hasWorker(name: string): boolean {
    return this.workers.has(name);
  }

  /** The open task queues not used since `before` (epoch ms), with when each was last used. */
  unusedSince(before: number): { name: string; usedAt: number }[] {
    const out: { name: string; usedAt: number }[] = [];
    for (const [name, usedAt] of this.usedAt) if (usedAt < before) out.push({ name, usedAt });
    return out;
  }

  /** When a task queue was last used; undefined when it is not open. */
  lastUsed(name: string): number | undefined {
    return this.usedAt.get(name);
  }

  /** Jobs of a task queue that some worker holds (BullMQ's active list). */
  activeCount(name: string): Promise<number> {
    // Without marking the queue used: an idle queue is asked this before it is closed.
    return this.openQueue(name).getActiveCount();
  }

  /**
   * Closes a task queue's Queue and Worker (and with it the Worker's blocking
   * connection and stalled-job checker); the next use opens them again.
   */
  async closeQueue(name: string): Promise<void> {
    const worker = this.workers.get(name);
    const queue = this.queues.get(name);
    this.workers.delete(name);
    this.queues.delete(name);
    this.usedAt.delete(name);
    await Promise.allSettled([worker?.close(true), queue?.close()]);
  }

  /** Closes every queue and worker. */
  async close(): Promise<void> {
    // Force: these workers run no processor, and closing must not wait out a blocking fetch.
    await Promise.allSettled([...this.workers.values()].map((w) => w.close(true)));
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
  }
}

/** What BullMQ's `add` takes for a task. */
function jobOf(spec: TaskJobSpec): { name: string; data: TaskJobData; opts: JobsOptions } {
  return {
    name: spec.handler,
    data: { r: spec.runId, t: spec.taskId, w: spec.workflow, v: spec.version },
    opts: spec.delayMs ? { ...jobOptions(spec), delay: spec.delayMs } : jobOptions(spec),
  };
}

function jobOptions(spec: TaskJobSpec): JobsOptions {
  return {
    jobId: jobIdOf(spec.runId, spec.taskId),
    attempts: spec.maxAttempts,
    backoff: { type: "weft" },
    removeOnComplete: KEEP_COMPLETED,
    removeOnFail: KEEP_FAILED,
  };
}
