import { Code, ConnectError } from "@connectrpc/connect";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { logThrottle } from "../log-throttle.js";
import { createRedisClient } from "../redis.js";
import { ANSWER_OVERHEAD_BYTES, DEFAULT_MAX_RESPONSE_BYTES } from "./answer-size.js";
import { BackoffLoop } from "./backoff-loop.js";
import type { CompiledTask } from "./dag.js";
import { type DispatchStats, QueueDispatcher } from "./dispatcher.js";
import { EventHub } from "./event-hub.js";
import { jobIdOf } from "./ids.js";
import type { TaskJobSpec } from "./jobs.js";
import { KeyLimiter } from "./key-limiter.js";
import { Keys } from "./keys.js";
import { LeaseOps } from "./lease-ops.js";
import { LruCache } from "./lru-cache.js";
import type { Policy } from "./policy.js";
import { QueueAdmin } from "./queue-admin.js";
import { Reconciler } from "./reconciler.js";
import { defineTaskView } from "./run-answer.js";
import { RunOps } from "./run-ops.js";
import { RunSteps } from "./run-steps.js";
import { TaskQueues } from "./task-queues.js";
import { type TimerData, Timers } from "./timers.js";
import { Watches } from "./watch.js";
import { type LoadedWorkflow, WorkflowStore } from "./workflow-store.js";

/** Settings of the engine. */
export interface EngineOptions {
  /** Prefix of every Redis key. */
  prefix: string;
  /** How long finished runs are kept, in ms. */
  runRetentionMs: number;
  /** Longest long-poll wait granted, in ms. */
  pollWaitCapMs: number;
  /** Most tasks in one workflow. */
  maxTasksPerWorkflow: number;
  /** Largest JSON payload (input, output, progress), in bytes. */
  maxPayloadBytes: number;
  /** Largest answer or assignment message, in bytes (default 4 MiB). */
  maxResponseBytes?: number;
  /** Heartbeat timeout of tasks that set none, in ms. */
  defaultHeartbeatTimeoutMs: number;
  /** How often each replica checks for expired BullMQ locks, in ms. */
  stalledIntervalMs: number;
  /** Most concurrent WatchRun streams on one replica. */
  maxWatchersPerReplica: number;
  /** How long a run must be quiet before the reconciler checks it, in ms. */
  reconcileAfterMs: number;
  /**
   * How long a job a completion fetched waits for a poll of this replica
   * before it goes back to its queue, in ms (default 100).
   */
  heldJobWaitMs?: number;
  /** Most task queues with a BullMQ Worker open at once; a poll of one more is refused (default 1,000). */
  maxOpenQueues?: number;
  /** How long a task queue stays open unused before it closes, in ms (default 2 minutes). */
  queueIdleMs?: number;
}

/** Extra time a BullMQ lock outlives the lease it backs, so that Weft's own deadline decides first. */
export const LOCK_GRACE_MS = 1000;

/**
 * How long a fetched job stays locked before its task starts under a lease:
 * how long it stays out of reach (plus the stalled checker's interval) when
 * the replica holding it dies.
 */
const HELD_LOCK_MS = 2000;

/** Defaults of {@link EngineOptions.maxOpenQueues} and {@link EngineOptions.queueIdleMs}. */
const MAX_OPEN_QUEUES = 1000;
const QUEUE_IDLE_MS = 120_000;

/**
 * Most jobs enqueued in one BullMQ call. A step that makes many tasks ready
 * (a trigger or a fan-out) adds them in chunks, one after the other: BullMQ
 * builds several KiB of objects per job it adds, and the first tasks start
 * while the later chunks are still being added.
 */
export const ENQUEUE_CHUNK = 1000;

/**
 * The workflow engine of one weftd replica. Replicas share nothing but Redis:
 * run state lives in Redis hashes and lists, tasks in BullMQ queues, and
 * every step that changes a run is one Lua script on that run's keys.
 */
export class Engine {
  readonly keys: Keys;
  readonly steps: RunSteps;
  readonly workflows: WorkflowStore;
  readonly queues: TaskQueues;
  readonly hub: EventHub;
  readonly runs: RunOps;
  readonly leases: LeaseOps;
  readonly watches: Watches;
  readonly admin: QueueAdmin;
  readonly limiter: KeyLimiter;
  readonly timers: Timers;
  readonly reconciler: Reconciler;
  private readonly knownQueues = new Set<string>();
  private readonly dispatchers = new Map<string, QueueDispatcher>();
  private idleSweep: BackoffLoop | undefined;
  /** {@link EngineOptions.maxResponseBytes}, default applied. */
  readonly maxResponseBytes: number;
  /** {@link EngineOptions.maxOpenQueues} and {@link EngineOptions.queueIdleMs}, defaults applied. */
  private readonly maxOpenQueues: number;
  private readonly queueIdleMs: number;
  /** How this replica's dispatchers came by their jobs. */
  readonly dispatchStats: DispatchStats = { fetchedForPolls: 0, fetchedByCompletions: 0, heldReturned: 0 };
  private readonly runRefs = new LruCache<string, { workflow: string; version: number }>({
    maxEntries: 50_000,
  });

  private constructor(
    readonly redis: Redis,
    private readonly bullConnection: Redis,
    private readonly queueConnection: Redis,
    private readonly subscriber: Redis,
    readonly options: EngineOptions,
    readonly policy: Policy,
    readonly logger: Logger,
  ) {
    this.keys = new Keys(options.prefix);
    this.maxOpenQueues = options.maxOpenQueues ?? MAX_OPEN_QUEUES;
    this.maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.queueIdleMs = options.queueIdleMs ?? QUEUE_IDLE_MS;
    // A run's output goes whole into its final event and its answers: it must leave them room.
    // Every script weftd runs on its client is defined before the client sends anything.
    defineTaskView(redis);
    this.steps = new RunSteps(redis, this.keys, this.maxResponseBytes - ANSWER_OVERHEAD_BYTES);
    this.workflows = new WorkflowStore(
      redis,
      this.keys,
      {
        maxTasks: options.maxTasksPerWorkflow,
        maxPayloadBytes: options.maxPayloadBytes,
        maxResponseBytes: this.maxResponseBytes,
        // Room for a few versions of the largest size allowed (about 100 bytes per task).
        cacheTasks: Math.max(200_000, 2 * options.maxTasksPerWorkflow),
      },
      { retry: policy.retry, heartbeatTimeoutMs: options.defaultHeartbeatTimeoutMs },
    );
    this.queues = new TaskQueues(
      bullConnection,
      queueConnection,
      this.keys,
      {
        lockDurationMs: options.defaultHeartbeatTimeoutMs + LOCK_GRACE_MS,
        heldLockMs: HELD_LOCK_MS,
        stalledIntervalMs: options.stalledIntervalMs,
        drainDelaySeconds: 5,
      },
      logger,
      (queue, jobId) => this.leases.onStalled(queue, jobId),
    );
    this.hub = new EventHub(
      redis,
      subscriber,
      (runId) => this.keys.run(runId).events,
      (channel) => /\{([^}]+)\}:log$/.exec(channel)?.[1],
      logger,
      this.maxResponseBytes - ANSWER_OVERHEAD_BYTES,
    );
    this.runs = new RunOps(this);
    this.leases = new LeaseOps(this);
    this.watches = new Watches(this);
    this.reconciler = new Reconciler(this);
    this.admin = new QueueAdmin(redis, this.keys, this.queues, logger);
    this.limiter = new KeyLimiter(redis, this.keys, policy);
    this.timers = new Timers(bullConnection, queueConnection, this.keys, logger, (timer) => this.fire(timer));
  }

  /** Opens the engine's own Redis connections and starts the reconciler. */
  static async open(
    redisUrl: string,
    redis: Redis,
    options: EngineOptions,
    policy: Policy,
    logger: Logger,
  ): Promise<Engine> {
    // BullMQ's Workers need a connection whose commands wait out an outage; its Queues one that
    // fails fast, and without auto-pipelining: BullMQ defines its scripts on a connection when a
    // queue opens, and ioredis cannot take a script defined while an auto-pipeline is open. The
    // subscriber is dedicated to pub/sub. All reconnect as the main client does.
    const waiting = {
      maxRetriesPerRequest: null,
      autoResendUnfulfilledCommands: true,
      enableAutoPipelining: false,
    };
    const bullConnection = createRedisClient(redisUrl, `weftd-workers:${options.prefix}`, waiting);
    const queueConnection = createRedisClient(redisUrl, `weftd-queues:${options.prefix}`, {
      enableAutoPipelining: false,
    });
    const subscriber = createRedisClient(redisUrl, `weftd-events:${options.prefix}`, waiting);
    for (const connection of [bullConnection, queueConnection, subscriber]) connection.on("error", () => {});
    const engine = new Engine(redis, bullConnection, queueConnection, subscriber, options, policy, logger);
    await engine.admin.apply(policy);
    engine.reconciler.start();
    const log = logThrottle(logger);
    engine.idleSweep = new BackoffLoop(() => engine.closeIdleQueues(), {
      everyMs: Math.max(1000, Math.min(engine.queueIdleMs, 30_000)),
      maxMs: 60_000,
      onError: (err, retryInMs) => log.warn({ err, retryInMs }, "closing idle task queues failed"),
    });
    engine.idleSweep.start();
    return engine;
  }

  /**
   * The dispatcher of a task queue on this replica, for a poll. A queue not
   * open here is refused with RESOURCE_EXHAUSTED once {@link EngineOptions.maxOpenQueues}
   * queues are: each holds a Redis connection, and a caller polling ever new
   * queue names must not exhaust Redis's connections.
   */
  dispatcher(queue: string): QueueDispatcher {
    let dispatcher = this.dispatchers.get(queue);
    if (dispatcher === undefined) {
      const max = this.maxOpenQueues;
      if (!this.queues.hasWorker(queue) && this.queues.workerCount >= max) {
        const idleS = this.queueIdleMs / 1000;
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
        this.options.heldJobWaitMs ?? 100,
        this.dispatchStats,
      );
      this.dispatchers.set(queue, dispatcher);
    }
    return dispatcher;
  }

  /** The dispatcher of a task queue when this replica has one and the queue has a backlog. */
  backloggedDispatcher(queue: string): QueueDispatcher | undefined {
    const dispatcher = this.dispatchers.get(queue);
    return dispatcher?.backlogged ? dispatcher : undefined;
  }

  /** The workflow version a run executes, cached; undefined when the run does not exist. */
  async workflowOf(runId: string): Promise<LoadedWorkflow | undefined> {
    const ref = this.runRefs.get(runId);
    if (ref !== undefined) return this.workflows.get(ref.workflow, ref.version);
    const [workflow, version] = await this.redis.hmget(this.keys.run(runId).run, "wf", "v");
    if (workflow === null || workflow === undefined || version === null || version === undefined)
      return undefined;
    this.rememberRun(runId, workflow, Number(version));
    return this.workflows.get(workflow, Number(version));
  }

  /** Records which workflow version a run executes. */
  rememberRun(runId: string, workflow: string, version: number): void {
    this.runRefs.set(runId, { workflow, version });
  }

  /** The job of a task. */
  jobSpec(runId: string, loaded: LoadedWorkflow, task: CompiledTask, delayMs?: number): TaskJobSpec {
    return {
      runId,
      taskId: task.id,
      workflow: loaded.workflow.name,
      version: loaded.workflow.version,
      queue: task.queue,
      handler: task.handler,
      maxAttempts: task.retry.maxAttempts,
      delayMs,
    };
  }

  /**
   * Enqueues the jobs of tasks made ready by a step, with their schedule-to-start
   * timers, in chunks of {@link ENQUEUE_CHUNK} in the order given.
   */
  async enqueue(runId: string, loaded: LoadedWorkflow, taskIds: readonly string[]): Promise<void> {
    await this.enqueueAll([{ runId, loaded, taskIds }]);
  }

  /** Queues the tasks of several runs, in chunks of jobs added with one BullMQ call per queue. */
  async enqueueAll(
    runs: readonly { runId: string; loaded: LoadedWorkflow; taskIds: readonly string[] }[],
  ): Promise<void> {
    let specs: TaskJobSpec[] = [];
    let timers: { data: TimerData; delayMs: number }[] = [];
    const flush = async () => {
      await Promise.all([this.queues.add(specs), this.timers.schedule(timers)]);
      specs = [];
      timers = [];
    };
    for (const { runId, loaded, taskIds } of runs) {
      for (const id of taskIds) {
        const task = loaded.compiled.byId.get(id);
        if (task === undefined) continue;
        specs.push(this.jobSpec(runId, loaded, task));
        if (task.scheduleToStartMs > 0) {
          timers.push({
            data: { kind: "schedule-to-start", runId, taskId: id },
            delayMs: task.scheduleToStartMs,
          });
        }
        if (!this.knownQueues.has(task.queue)) {
          this.knownQueues.add(task.queue);
          await this.admin.remember(task.queue);
        }
        if (specs.length === ENQUEUE_CHUNK) await flush();
      }
    }
    if (specs.length > 0) await flush();
  }

  /** Handles a timer that fired. */
  private async fire(timer: TimerData): Promise<void> {
    const loaded = await this.workflowOf(timer.runId);
    if (loaded === undefined) return;
    if (timer.kind === "run-timeout") {
      const ms = loaded.compiled.runTimeoutMs;
      await this.runs.terminate(timer.runId, `the run timeout of ${ms} ms expired`, "X");
      return;
    }
    const task = timer.taskId === undefined ? undefined : loaded.compiled.byId.get(timer.taskId);
    if (task !== undefined) await this.leases.scheduleToStartExpired(timer.runId, loaded, task);
  }

  /**
   * Drops the BullMQ jobs a run step released ("taskId|token" entries: a
   * token means the job is locked by a lease, none that it waits or is
   * delayed). Failures are logged: a job that is already gone needs nothing.
   */
  async dropJobs(runId: string, loaded: LoadedWorkflow, entries: (string | number)[]): Promise<void> {
    await Promise.all(
      entries.map(async (entry) => {
        const [taskId = "", token = ""] = String(entry).split("|");
        const task = loaded.compiled.byId.get(taskId);
        if (task === undefined) return;
        const spec = this.jobSpec(runId, loaded, task);
        try {
          if (token !== "") await this.queues.complete(spec, token);
          else await this.queues.remove(task.queue, jobIdOf(runId, taskId));
        } catch (err) {
          this.logger.debug({ err, runId, taskId }, "job already gone");
        }
      }),
    );
  }

  /**
   * Closes the task queues nothing used for {@link EngineOptions.queueIdleMs}:
   * their dispatcher, BullMQ Queue and Worker (with its blocking connection).
   * A queue with jobs that workers hold stays open, so that a stalled-job
   * checker keeps watching their leases. Returns the names it closed.
   */
  async closeIdleQueues(): Promise<string[]> {
    const closed: string[] = [];
    const before = Date.now() - this.queueIdleMs;
    for (const { name, usedAt } of this.queues.unusedSince(before)) {
      if (this.dispatchers.get(name)?.idle === false) continue;
      if ((await this.queues.activeCount(name).catch(() => 1)) > 0) continue;
      // Used again while Redis answered: keep it.
      if (this.queues.lastUsed(name) !== usedAt || this.dispatchers.get(name)?.idle === false) continue;
      const dispatcher = this.dispatchers.get(name);
      this.dispatchers.delete(name);
      // Both drop their references now, in this tick: a poll from here on opens the queue afresh.
      await Promise.all([dispatcher?.close(), this.queues.closeQueue(name)]);
      closed.push(name);
    }
    if (closed.length > 0) this.logger.debug({ queues: closed }, "closed idle task queues");
    return closed;
  }

  /** Stops fetching, releases waiting polls, and closes the engine's connections. */
  async close(): Promise<void> {
    this.idleSweep?.stop();
    this.reconciler.stop();
    this.leases.timers.close();
    await Promise.all([...this.dispatchers.values()].map((dispatcher) => dispatcher.close()));
    await this.timers.close();
    this.logger.debug("engine: closing BullMQ queues and workers");
    await this.queues.close();
    this.logger.debug("engine: BullMQ closed");
    this.subscriber.disconnect();
    this.bullConnection.disconnect();
    this.queueConnection.disconnect();
  }
}
