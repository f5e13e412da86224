import { keySlot, SLOTS } from "../../redis/slots.js";

/**
 * Redis key layout. Every key of one run carries the run id as a hash tag so
 * that a run's atomic steps (Lua) touch a single Redis Cluster slot.
 *
 * The sets every run enters (the run indexes, the recently-touched set) and the timers' queue are
 * sharded on a Redis Cluster, so that no single slot carries every run's traffic: a run's entries
 * go to the shard of its own slot, each shard's keys carry one of {@link CLUSTER_SHARD_TAGS} as
 * their hash tag. On one server (or Sentinel) there is one shard, whose keys are those of weftd
 * before Cluster support. Whatever reads these sets reads every shard.
 */
export interface RunKeys {
  /** Hash: the run's own fields (status, input, counters, output). */
  run: string;
  /**
   * Hash: task id → JSON task record, for every task that left PENDING; `d:<id>` → number of parents
   * not yet succeeded; `o:<id>` → JSON output of a succeeded task (see run-scripts.ts).
   */
  tasks: string;
  /**
   * List: the run's events, the one of sequence s at index s - 1, each the JSON array
   * [s, time, field, value...]; also the pub/sub channel of new events.
   */
  events: string;
}

/**
 * Hash tags of the shards of the sets every run enters, on a Redis Cluster: the tag of shard k
 * hashes to slot 1024k + 512, the middle of the k-th sixteenth of the slots, so that the shards
 * spread over the masters as evenly as the slots do, and a run's shard mostly lives on its run's
 * master. Part of the stored layout: never change them.
 */
export const CLUSTER_SHARD_TAGS: readonly string[] = [
  "s51093",
  "s16854",
  "s12001",
  "s44887",
  "s7813",
  "s43803",
  "s8549",
  "s3046",
  "s69739",
  "s21669",
  "s4669",
  "s12267",
  "s9808",
  "s10591",
  "s628",
  "s42542",
];

/** Builds every Redis key Weft uses under one prefix. */
export class Keys {
  /** Shards of the sets every run enters: 1 on one server, {@link CLUSTER_SHARD_TAGS}' count on a Cluster. */
  readonly shards: number;

  /**
   * @param sharded the sets every run enters are sharded (on a Redis Cluster); `number` (tests
   *   only): that many shards, the first tags of {@link CLUSTER_SHARD_TAGS}.
   */
  constructor(
    readonly prefix: string,
    sharded: boolean | number = false,
  ) {
    this.shards =
      typeof sharded === "number"
        ? Math.max(1, Math.min(sharded, CLUSTER_SHARD_TAGS.length))
        : sharded
          ? CLUSTER_SHARD_TAGS.length
          : 1;
  }

  /** The shard of a run's entries in the sharded sets: the one whose slots hold the run's slot. */
  shardOf(runId: string): number {
    return this.shards === 1 ? 0 : Math.floor((keySlot(`{${runId}}`) * this.shards) / SLOTS);
  }

  /** The suffix of shard `shard`'s keys: none with one shard, else `:{<tag>}`. */
  private shard(shard: number): string {
    return this.shards === 1 ? "" : `:{${CLUSTER_SHARD_TAGS[shard]}}`;
  }

  /** Every shard number. */
  private all(): number[] {
    return Array.from({ length: this.shards }, (_, i) => i);
  }

  run(runId: string): RunKeys {
    const base = `${this.prefix}:run:{${runId}}`;
    return {
      run: base,
      tasks: `${base}:tasks`,
      events: `${base}:log`,
    };
  }

  /** Hash of one workflow's versions: `v:<n>` → definition, `h:<hash>` → version, `latest`. */
  workflow(name: string): string {
    return `${this.prefix}:wf:{${name}}`;
  }

  /**
   * Pub/sub channel (not a key) on which the step that finishes a run of the workflow announces it,
   * as "<runId> <sequence of its RUN_FINISHED event>" (see announceFinish in run-scripts.ts).
   */
  workflowDone(name: string): string {
    return `${this.prefix}:wf:{${name}}:done`;
  }

  /** Sorted set of workflow names (all scores 0, ordered by name). */
  workflowIndex(): string {
    return `${this.prefix}:wfs`;
  }

  /**
   * Sorted set of run ids scored by creation time, one shard of it; per workflow when a name is
   * given. `<p>:runs`, `<p>:runs:wf:<name>` with one shard; `<p>:runs:{<tag>}`,
   * `<p>:runs:wf:<name>:{<tag>}` on a Cluster.
   */
  runIndex(workflow: string | undefined, shard: number): string {
    const base = workflow === undefined ? `${this.prefix}:runs` : `${this.prefix}:runs:wf:${workflow}`;
    return base + this.shard(shard);
  }

  /** Every shard of a run index (of every run, or of a workflow's). */
  runIndexes(workflow?: string): string[] {
    return this.all().map((shard) => this.runIndex(workflow, shard));
  }

  /** The shard of a run index that holds a run. */
  runIndexOf(runId: string, workflow?: string): string {
    return this.runIndex(workflow, this.shardOf(runId));
  }

  /** Sorted set of task queue names weftd has seen (all scores 0, ordered by name). */
  queueIndex(): string {
    return `${this.prefix}:queues`;
  }

  /** Hash of task queue rate limits: queue name → "max/perMs". */
  queueLimits(): string {
    return `${this.prefix}:qlimits`;
  }

  /**
   * Sorted set of runs touched recently, scored by the time of their last step (see reconciler),
   * one shard of it: `<p>:dirty`, or `<p>:dirty:{<tag>}` on a Cluster.
   */
  dirtyRuns(shard: number): string {
    return `${this.prefix}:dirty${this.shard(shard)}`;
  }

  /** Every shard of the recently-touched set. */
  dirtyShards(): string[] {
    return this.all().map((shard) => this.dirtyRuns(shard));
  }

  /** The shard of the recently-touched set that holds a run. */
  dirtyOf(runId: string): string {
    return this.dirtyRuns(this.shardOf(runId));
  }

  /** Short-lived lock key taken by the replica that runs a reconciliation pass. */
  reconcilerLock(): string {
    return `${this.prefix}:reconciler`;
  }

  /**
   * Sorted set of dead letters ("<runId>/<taskId>") scored by the time the task failed for good:
   * every one, or those of one queue, workflow or error type. Plain keys: each entry lives with its
   * run (`x:<taskId>` in the run's hash); these only list them.
   */
  deadLetterIndex(by?: { queue: string } | { workflow: string } | { errorType: string }): string {
    const base = `${this.prefix}:dlq`;
    if (by === undefined) return base;
    if ("queue" in by) return `${base}:q:${by.queue}`;
    if ("workflow" in by) return `${base}:wf:${by.workflow}`;
    return `${base}:et:${by.errorType}`;
  }

  /** Sorted set of the error types of dead letters (all scores 0, ordered by name), for pruning. */
  deadLetterTypes(): string {
    return `${this.prefix}:dlq:types`;
  }

  /**
   * Hash of a task queue's circuit breakers: circuit ("*" for the whole queue, else a handler) →
   * its state as JSON. Hash-tagged by the queue, with the keys below, so that one script sees all.
   */
  circuits(queue: string): string {
    return `${this.prefix}:cb:{${queue}}`;
  }

  /** Sorted set of a circuit's recent failures, scored by time. */
  circuitFailures(queue: string, circuit: string): string {
    return `${this.prefix}:cb:{${queue}}:f:${circuit}`;
  }

  /** Sorted set of a half-open circuit's probes (job ids), scored by when they started. */
  circuitProbes(queue: string, circuit: string): string {
    return `${this.prefix}:cb:{${queue}}:p:${circuit}`;
  }

  /** Hash of task queues' circuit breaker settings: queue name → JSON (UpdateQueue, the config file). */
  circuitSettings(): string {
    return `${this.prefix}:cbset`;
  }

  /** Hash of one schedule: its spec and its state (see schedules/schedule-store.ts). */
  schedule(id: string): string {
    return `${this.prefix}:sched:{${id}}`;
  }

  /** Sorted set of the runs a schedule started, scored by creation time (ListRuns by schedule). */
  scheduleRuns(id: string): string {
    return `${this.prefix}:sched:{${id}}:runs`;
  }

  /** Sorted set of schedule ids (all scores 0, ordered by id), for ListSchedules. */
  scheduleIndex(): string {
    return `${this.prefix}:scheds`;
  }

  /**
   * Sorted set of schedule ids scored by when each is next due (its next fire time plus jitter, or
   * the end of a replica's claim): the one key the firing loop shares between all schedules.
   */
  scheduleDue(): string {
    return `${this.prefix}:{scheds}:due`;
  }

  /**
   * Pub/sub channel on which a schedule's earlier due time wakes every replica's firing loop. In the
   * due set's slot: on a Cluster the script that moves a schedule in the due set announces it there
   * with SPUBLISH, which must stay in the script's slot.
   */
  scheduleWake(): string {
    return `${this.prefix}:{scheds}:wake`;
  }

  /** BullMQ prefix for one task queue: hash-tagged so each queue lives in one slot. */
  queuePrefix(queue: string): string {
    return `${this.prefix}:q:{${queue}}`;
  }

  /** BullMQ's lock of a job of a task queue: its value is the token of the fetch that holds the job. */
  jobLock(queue: string, jobId: string): string {
    return `${this.queuePrefix(queue)}:${queue}:${jobId}:lock`;
  }

  /**
   * BullMQ prefix of one shard of the timers' queue ("timers"): `<p>:q:{_timers}` with one
   * shard, `<p>:q:{<tag>}` on a Cluster.
   */
  timerPrefix(shard: number): string {
    return this.shards === 1
      ? this.queuePrefix("_timers")
      : `${this.prefix}:q:{${CLUSTER_SHARD_TAGS[shard]}}`;
  }
}
