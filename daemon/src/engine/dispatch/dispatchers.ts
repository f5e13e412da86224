import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { logThrottle } from "../../observability/log-throttle.js";
import { BackoffLoop } from "../shared/index.js";
import { type DispatchStats, QueueDispatcher } from "./dispatcher.js";
import type { TaskQueues } from "./task-queues.js";

/** Settings of a replica's dispatchers. */
export interface DispatchersSettings {
  /** Most task queues with a BullMQ Worker open at once; a poll of one more is refused. */
  maxOpenQueues: number;
  /** How long a task queue stays open unused before it closes, in ms. */
  queueIdleMs: number;
  /** How long a job a completion fetched waits for a poll of this replica before it goes back, in ms. */
  heldJobWaitMs: number;
}

/**
 * The dispatchers of the task queues this replica's polls use, one per queue, opened on a queue's
 * first poll and closed (with the queue's BullMQ Worker) once the queue has been idle for a while.
 */
export class Dispatchers {
  /** How this replica's dispatchers came by their jobs. */
  readonly stats: DispatchStats = { fetchedForPolls: 0, fetchedByCompletions: 0, heldReturned: 0 };
  private readonly byQueue = new Map<string, QueueDispatcher>();
  private idleSweep: BackoffLoop | undefined;

  constructor(
    private readonly queues: TaskQueues,
    private readonly logger: Logger,
    private readonly settings: DispatchersSettings,
  ) {}

  /**
   * The dispatcher of a task queue on this replica, for a poll. A queue not
   * open here is refused with RESOURCE_EXHAUSTED once {@link DispatchersSettings.maxOpenQueues}
   * queues are: each holds a Redis connection, and a caller polling ever new
   * queue names must not exhaust Redis's connections.
   */
  get(queue: string): QueueDispatcher {
    let dispatcher = this.byQueue.get(queue);
    if (dispatcher === undefined) {
      const max = this.settings.maxOpenQueues;
      if (!this.queues.hasWorker(queue) && this.queues.workerCount >= max) {
        const idleS = this.settings.queueIdleMs / 1000;
        throw new ConnectError(
          `queue: "${queue}" would be one task queue more than this replica keeps open at once ` +
            `(--max-open-queues ${max}); a queue no poll used for ${idleS} s closes`,
          Code.ResourceExhausted,
        );
      }
      dispatcher = new QueueDispatcher(
        queue,
        {
          worker: () => this.queues.worker(queue),
          extendLocks: (jobs) => this.queues.extendLocks(queue, jobs),
        },
        this.logger,
        this.settings.heldJobWaitMs,
        this.stats,
      );
      this.byQueue.set(queue, dispatcher);
    }
    return dispatcher;
  }

  /** The dispatcher of a task queue when this replica has one and the queue has a backlog. */
  backlogged(queue: string): QueueDispatcher | undefined {
    const dispatcher = this.byQueue.get(queue);
    return dispatcher?.backlogged ? dispatcher : undefined;
  }

  /** Closes idle task queues every little while (see {@link closeIdle}). */
  start(): void {
    const log = logThrottle(this.logger);
    this.idleSweep = new BackoffLoop(() => this.closeIdle(), {
      everyMs: Math.max(1000, Math.min(this.settings.queueIdleMs, 30_000)),
      maxMs: 60_000,
      onError: (err, retryInMs) => log.warn({ err, retryInMs }, "closing idle task queues failed"),
    });
    this.idleSweep.start();
  }

  /**
   * Closes the task queues nothing used for {@link DispatchersSettings.queueIdleMs}:
   * their dispatcher, BullMQ Queue and Worker (with its blocking connection).
   * A queue with jobs that workers hold stays open, so that a stalled-job
   * checker keeps watching their leases. Returns the names it closed.
   */
  async closeIdle(): Promise<string[]> {
    const closed: string[] = [];
    const before = Date.now() - this.settings.queueIdleMs;
    for (const { name, usedAt } of this.queues.unusedSince(before)) {
      if (this.byQueue.get(name)?.idle === false) continue;
      if ((await this.queues.activeCount(name).catch(() => 1)) > 0) continue;
      // Used again while Redis answered: keep it.
      if (this.queues.lastUsed(name) !== usedAt || this.byQueue.get(name)?.idle === false) continue;
      const dispatcher = this.byQueue.get(name);
      this.byQueue.delete(name);
      // Both drop their references now, in this tick: a poll from here on opens the queue afresh.
      await Promise.all([dispatcher?.close(), this.queues.closeQueue(name)]);
      closed.push(name);
    }
    if (closed.length > 0) this.logger.debug({ queues: closed }, "closed idle task queues");
    return closed;
  }

  /** Stops the idle sweep and closes every dispatcher: waiting polls are released, held jobs put back. */
  async close(): Promise<void> {
    this.idleSweep?.stop();
    await Promise.all([...this.byQueue.values()].map((dispatcher) => dispatcher.close()));
  }
}
