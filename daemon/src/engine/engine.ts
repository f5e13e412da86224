import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Policy } from "../policy.js";
import { type ChannelSubscriber, ServerSubscriber } from "../redis/channel-subscriber.js";
import { ClusterSubscriber } from "../redis/cluster-subscriber.js";
import { createRedisClient, isCluster, type RedisClient } from "../redis/redis.js";
import { type LoadedWorkflow, WorkflowStore } from "./definitions/index.js";
import {
  Dispatchers,
  type DispatchStats,
  KeyLimiter,
  LOCK_GRACE_MS,
  QueueAdmin,
  type QueueDispatcher,
  TaskQueues,
  type TimerData,
  Timers,
} from "./dispatch/index.js";
import {
  Circuits,
  DeadLetterIndex,
  DeadLetterReads,
  DeadLetters,
  FailureStats,
  ResumeOps,
} from "./failures/index.js";
import { LeaseOps } from "./leases/index.js";
import {
  defineTaskView,
  INDEX_PRUNE_GRACE_MS,
  Reconciler,
  RunJobs,
  RunOps,
  RunReads,
  RunSteps,
  RunWorkflows,
} from "./runs/index.js";
import { ClockCache, FiringLoop, ScheduleFires, ScheduleOps, ScheduleStore } from "./schedules/index.js";
import { ANSWER_OVERHEAD_BYTES, DEFAULT_MAX_RESPONSE_BYTES, Keys } from "./shared/index.js";
import { EventHub, FinishHub, Watches } from "./watch/index.js";

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
  /** Most concurrent WatchRun and WatchRuns streams on one replica. */
  maxWatchersPerReplica: number;
  /** Most runs one WatchRuns stream follows (default 10,000). */
  maxRunsPerWatch?: number;
  /** Most events a WatchRuns stream holds for a slow client (default 10,000). */
  maxWatchBuffer?: number;
  /** How long a run must be quiet before the reconciler checks it, in ms. */
  reconcileAfterMs: number;
  /**
   * How much older than the run retention an index entry whose run is gone must be before ListRuns
   * or the reconciler removes it, in ms (default INDEX_PRUNE_GRACE_MS, 60 s): an entry is written
   * before its run, and by the clock of the replica that triggered it.
   */
  indexPruneGraceMs?: number;
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

/**
 * How long a fetched job stays locked before its task starts under a lease:
 * how long it stays out of reach (plus the stalled checker's interval) when
 * the replica holding it dies.
 */
const HELD_LOCK_MS = 2000;

/** Defaults of {@link EngineOptions.maxOpenQueues}, {@link EngineOptions.queueIdleMs} and {@link EngineOptions.heldJobWaitMs}. */
const MAX_OPEN_QUEUES = 1000;
const QUEUE_IDLE_MS = 120_000;
const HELD_JOB_WAIT_MS = 100;
/** Defaults of {@link EngineOptions.maxRunsPerWatch} and {@link EngineOptions.maxWatchBuffer}. */
const MAX_RUNS_PER_WATCH = 10_000;
const MAX_WATCH_BUFFER = 10_000;
/** Most workflows one WatchRuns stream follows. */
const MAX_WORKFLOWS_PER_WATCH = 100;

/**
 * The workflow engine of one weftd replica. Replicas share nothing but Redis:
 * run state lives in Redis hashes and lists, tasks in BullMQ queues, and
 * every step that changes a run is one Lua script on that run's keys.
 *
 * This class builds the engine's parts and wires them together: each part gets the parts it works
 * with, and the callbacks between parts (a timer that fires, a job that stalled) are closures here.
 */
export class Engine {
  readonly keys: Keys;
  readonly steps: RunSteps;
  readonly workflows: WorkflowStore;
  readonly queues: TaskQueues;
  readonly hub: EventHub;
  readonly finishes: FinishHub;
  readonly admin: QueueAdmin;
  readonly runs: RunOps;
  readonly leases: LeaseOps;
  readonly watches: Watches;
  readonly reconciler: Reconciler;
  /** Circuit breakers per task queue or handler. */
  readonly circuits: Circuits;
  /** The dead-letter view and what operators do with it. */
  readonly deadLetters: DeadLetters;
  /** Resuming finished runs. */
  readonly resumes: ResumeOps;
  /** Failures' figures for /metrics. */
  readonly failureStats: FailureStats;
  /** Schedules: the calls of ScheduleService. */
  readonly schedules: ScheduleOps;
  /** The fire steps of schedules, with this replica's counts. */
  readonly scheduleFires: ScheduleFires;
  /** {@link EngineOptions.maxResponseBytes}, default applied. */
  readonly maxResponseBytes: number;
  /** How this replica's dispatchers came by their jobs. */
  readonly dispatchStats: DispatchStats;
  private readonly dispatchers: Dispatchers;
  private readonly runWorkflows: RunWorkflows;
  private readonly jobs: RunJobs;
  private readonly timers: Timers;
  private readonly firingLoop: FiringLoop;

  private constructor(
    readonly redis: RedisClient,
    private readonly bullConnection: RedisClient,
    private readonly queueConnection: RedisClient,
    private readonly subscriber: ChannelSubscriber,
    /** Where the workflows' channels are followed: `subscriber`, but on a Cluster one of its own. */
    private readonly finishSubscriber: ChannelSubscriber,
    readonly options: EngineOptions,
    policy: Policy,
    readonly logger: Logger,
  ) {
    // On a Redis Cluster the sets every run enters are sharded (see Keys).
    const keys = new Keys(options.prefix, isCluster(redis));
    const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    const pruneGraceMs = options.indexPruneGraceMs ?? INDEX_PRUNE_GRACE_MS;
    this.keys = keys;
    this.maxResponseBytes = maxResponseBytes;
    // Every script weftd runs on its client is defined before the client sends anything.
    defineTaskView(redis);

    // Definitions.
    const workflows = new WorkflowStore(
      redis,
      keys,
      {
        maxTasks: options.maxTasksPerWorkflow,
        maxPayloadBytes: options.maxPayloadBytes,
        maxResponseBytes,
        // Room for a few versions of the largest size allowed (about 100 bytes per task).
        cacheTasks: Math.max(200_000, 2 * options.maxTasksPerWorkflow),
      },
      { retry: policy.retry, heartbeatTimeoutMs: options.defaultHeartbeatTimeoutMs },
    );
    this.workflows = workflows;

    // Dispatch: the BullMQ side, limits, timers.
    const queues = new TaskQueues(
      bullConnection,
      queueConnection,
      keys,
      {
        lockDurationMs: options.defaultHeartbeatTimeoutMs + LOCK_GRACE_MS,
        heldLockMs: HELD_LOCK_MS,
        stalledIntervalMs: options.stalledIntervalMs,
        drainDelaySeconds: 5,
      },
      logger,
      (queue, jobId) => this.leases.onStalled(queue, jobId),
    );
    this.queues = queues;
    const dispatchers = new Dispatchers(queues, logger, {
      maxOpenQueues: options.maxOpenQueues ?? MAX_OPEN_QUEUES,
      queueIdleMs: options.queueIdleMs ?? QUEUE_IDLE_MS,
      heldJobWaitMs: options.heldJobWaitMs ?? HELD_JOB_WAIT_MS,
    });
    this.dispatchers = dispatchers;
    this.dispatchStats = dispatchers.stats;
    const admin = new QueueAdmin(redis, keys, queues, logger);
    this.admin = admin;
    const limiter = new KeyLimiter(redis, keys, policy);
    const timers = new Timers(bullConnection, queueConnection, keys, logger, (timer) => this.fire(timer));
    this.timers = timers;

    // Runs.
    // A run's output goes whole into its final event and its answers: it must leave them room.
    const steps = new RunSteps(redis, keys, maxResponseBytes - ANSWER_OVERHEAD_BYTES);
    this.steps = steps;
    const runWorkflows = new RunWorkflows(redis, keys, workflows);
    this.runWorkflows = runWorkflows;
    const jobs = new RunJobs(queues, timers, admin, logger);
    this.jobs = jobs;
    // Failures: circuit breakers, dead letters, resumes.
    const circuits = new Circuits(redis, keys, queues, logger);
    this.circuits = circuits;
    const deadLetterIndex = new DeadLetterIndex(redis, keys);
    const reads = new RunReads({
      redis,
      keys,
      workflows,
      // A queued task says why it waits: its queue's limits, or a circuit breaker.
      admin: {
        holdReason: async (queue, handler) =>
          (await admin.holdReason(queue)) || (await circuits.holdReason(queue, handler)),
      },
      maxResponseBytes,
      runRetentionMs: options.runRetentionMs,
      pruneGraceMs,
    });
    this.resumes = new ResumeOps({
      redis,
      keys,
      logger,
      runWorkflows,
      steps,
      jobs,
      timers,
      reads,
      index: deadLetterIndex,
      limits: { runRetentionMs: options.runRetentionMs },
    });
    this.deadLetters = new DeadLetters({
      redis,
      keys,
      logger,
      index: deadLetterIndex,
      reads: new DeadLetterReads(redis, keys, workflows, maxResponseBytes),
      resume: this.resumes,
      runReads: reads,
    });
    this.failureStats = new FailureStats(redis, keys, deadLetterIndex, circuits);
    this.runs = new RunOps({
      redis,
      keys,
      logger,
      workflows,
      runWorkflows,
      steps,
      jobs,
      timers,
      reads,
      limits: {
        maxPayloadBytes: options.maxPayloadBytes,
        maxResponseBytes,
        runRetentionMs: options.runRetentionMs,
      },
    });
    this.reconciler = new Reconciler({
      redis,
      keys,
      logger,
      runWorkflows,
      steps,
      queues,
      timers,
      settings: {
        reconcileAfterMs: options.reconcileAfterMs,
        runRetentionMs: options.runRetentionMs,
        pruneGraceMs,
      },
      extras: {
        checked: (runId) => deadLetterIndex.repairRun(runId),
        prune: (deadline) => deadLetterIndex.prune(options.runRetentionMs + pruneGraceMs, deadline),
      },
    });

    // Leases: the worker protocol.
    this.leases = new LeaseOps({
      redis,
      keys,
      logger,
      workflows,
      runWorkflows,
      steps,
      jobs,
      queues,
      dispatchers,
      admin,
      limiter,
      circuits,
      deadLetters: deadLetterIndex,
      failureStats: this.failureStats,
      limits: {
        pollWaitCapMs: options.pollWaitCapMs,
        maxResponseBytes,
        maxPayloadBytes: options.maxPayloadBytes,
        runRetentionMs: options.runRetentionMs,
      },
    });

    // Watch.
    this.hub = new EventHub(
      redis,
      subscriber,
      (runId) => keys.run(runId).events,
      (channel) => /\{([^}]+)\}:log$/.exec(channel)?.[1],
      logger,
      maxResponseBytes - ANSWER_OVERHEAD_BYTES,
    );
    // On a Redis Cluster a run's end is followed on the run's own (shard) channel: see FinishHub.
    this.finishes = new FinishHub(
      redis,
      finishSubscriber,
      keys,
      logger,
      maxResponseBytes - ANSWER_OVERHEAD_BYTES,
      isCluster(redis) ? this.hub : undefined,
    );
    this.watches = new Watches(
      { redis, keys, hub: this.hub, finishes: this.finishes },
      options.maxWatchersPerReplica,
      {
        maxRuns: options.maxRunsPerWatch ?? MAX_RUNS_PER_WATCH,
        maxWorkflows: MAX_WORKFLOWS_PER_WATCH,
        maxBuffered: options.maxWatchBuffer ?? MAX_WATCH_BUFFER,
        maxBufferedBytes: 4 * maxResponseBytes,
        maxMessageBytes: maxResponseBytes,
      },
    );

    // Schedules: they start runs through the run operations.
    const scheduleStore = new ScheduleStore(redis, keys);
    const clocks = new ClockCache();
    this.schedules = new ScheduleOps({
      redis,
      keys,
      logger,
      store: scheduleStore,
      clocks,
      workflows,
      runs: this.runs,
      limits: {
        maxPayloadBytes: options.maxPayloadBytes,
        runRetentionMs: options.runRetentionMs,
        maxResponseBytes,
      },
    });
    this.scheduleFires = new ScheduleFires({
      redis,
      keys,
      logger,
      store: scheduleStore,
      clocks,
      runs: this.runs,
      runRetentionMs: options.runRetentionMs,
    });
    this.firingLoop = new FiringLoop({
      keys,
      logger,
      subscriber,
      store: scheduleStore,
      fires: this.scheduleFires,
    });
  }

  /** Opens the engine's own Redis connections and starts the reconciler. */
  static async open(
    redisUrl: string,
    redis: RedisClient,
    options: EngineOptions,
    policy: Policy,
    logger: Logger,
  ): Promise<Engine> {
    // BullMQ's Workers need a connection whose commands wait out an outage; its Queues one that
    // fails fast, and without auto-pipelining: BullMQ defines its scripts on a connection when a
    // queue opens, and ioredis cannot take a script defined while an auto-pipeline is open. The
    // subscriber is dedicated to pub/sub (on a Cluster, one connection per master: sharded pub/sub).
    // All reconnect as the main client does; on a Cluster, BullMQ's blocking duplicates too.
    const bullConnection = createRedisClient(redisUrl, `weftd-workers:${options.prefix}`, {
      waitOutOutages: true,
      autoPipelining: false,
    });
    const queueConnection = createRedisClient(redisUrl, `weftd-queues:${options.prefix}`, {
      autoPipelining: false,
    });
    for (const connection of [bullConnection, queueConnection]) connection.on("error", () => {});
    const subscriber = createSubscriber(redisUrl, redis, options.prefix, logger);
    const finishSubscriber = isCluster(redis)
      ? createFinishSubscriber(redisUrl, options.prefix, logger)
      : subscriber;
    const engine = new Engine(
      redis,
      bullConnection,
      queueConnection,
      subscriber,
      finishSubscriber,
      options,
      policy,
      logger,
    );
    await engine.admin.apply(policy);
    await engine.circuits.apply(policy);
    engine.reconciler.start();
    engine.dispatchers.start();
    engine.firingLoop.start();
    return engine;
  }

  /** The dispatcher of a task queue when this replica has one and the queue has a backlog. */
  backloggedDispatcher(queue: string): QueueDispatcher | undefined {
    return this.dispatchers.backlogged(queue);
  }

  /**
   * Enqueues the jobs of tasks made ready by a step, with their schedule-to-start
   * timers (see RunJobs.enqueue).
   */
  enqueue(runId: string, loaded: LoadedWorkflow, taskIds: readonly string[]): Promise<void> {
    return this.jobs.enqueue(runId, loaded, taskIds);
  }

  /** Closes the task queues nothing used for a while; returns their names (see Dispatchers.closeIdle). */
  closeIdleQueues(): Promise<string[]> {
    return this.dispatchers.closeIdle();
  }

  /** Handles a timer that fired; returns a later time when its deadline moved (a resumed run). */
  private async fire(timer: TimerData): Promise<number | undefined> {
    const loaded = await this.runWorkflows.of(timer.runId);
    if (loaded === undefined) return undefined;
    if (timer.kind === "run-timeout") return this.runs.runTimeoutDue(timer.runId, loaded);
    const task = timer.taskId === undefined ? undefined : loaded.compiled.byId.get(timer.taskId);
    if (task === undefined) return undefined;
    return this.leases.scheduleToStartExpired(timer.runId, loaded, task);
  }

  /** Stops fetching, releases waiting polls, and closes the engine's connections. */
  async close(): Promise<void> {
    this.reconciler.stop();
    await this.firingLoop.stop();
    this.leases.timers.close();
    await this.dispatchers.close();
    await this.timers.close();
    this.logger.debug("engine: closing BullMQ queues and workers");
    await this.queues.close();
    this.logger.debug("engine: BullMQ closed");
    this.subscriber.close();
    if (this.finishSubscriber !== this.subscriber) this.finishSubscriber.close();
    this.bullConnection.disconnect();
    this.queueConnection.disconnect();
  }
}

/**
 * On a Redis Cluster, the subscriber of the workflows' channels: a step script announces a run's end
 * there with PUBLISH, which a Cluster sends to every node (a shard channel must be in the script's
 * slot, and a workflow's is not), so one connection to any node hears it; ioredis moves it to another
 * node when that one fails.
 */
function createFinishSubscriber(redisUrl: string, prefix: string, logger: Logger): ChannelSubscriber {
  const client = createRedisClient(redisUrl, `weftd-finishes:${prefix}`, {
    waitOutOutages: true,
    autoPipelining: false,
  });
  client.on("error", () => {});
  return new ServerSubscriber(client, logger);
}

/** The pub/sub subscriber of run events: one connection, or on a Cluster one per master (sharded). */
function createSubscriber(
  redisUrl: string,
  redis: RedisClient,
  prefix: string,
  logger: Logger,
): ChannelSubscriber {
  const connectionName = `weftd-events:${prefix}`;
  if (isCluster(redis)) {
    return new ClusterSubscriber(redis, { ...redis.options.redisOptions, connectionName }, logger);
  }
  const client = createRedisClient(redisUrl, connectionName, { waitOutOutages: true, autoPipelining: false });
  client.on("error", () => {});
  // A Sentinel URL resolves to the primary: this connection is a server's, not a Cluster's.
  return new ServerSubscriber(client as Redis, logger);
}
