/**
 * Redis key layout. Every key of one run carries the run id as a hash tag so
 * that a run's atomic steps (Lua) touch a single Redis Cluster slot.
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

/** Builds every Redis key Weft uses under one prefix. */
export class Keys {
  constructor(readonly prefix: string) {}

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

  /** Sorted set of workflow names (all scores 0, ordered by name). */
  workflowIndex(): string {
    return `${this.prefix}:wfs`;
  }

  /** Sorted set of run ids scored by creation time; per workflow when a name is given. */
  runIndex(workflow?: string): string {
    return workflow === undefined ? `${this.prefix}:runs` : `${this.prefix}:runs:wf:${workflow}`;
  }

  /** Sorted set of task queue names weftd has seen (all scores 0, ordered by name). */
  queueIndex(): string {
    return `${this.prefix}:queues`;
  }

  /** Hash of task queue rate limits: queue name → "max/perMs". */
  queueLimits(): string {
    return `${this.prefix}:qlimits`;
  }

  /** Sorted set of runs touched recently, scored by the time of their last step (see reconciler). */
  dirtyRuns(): string {
    return `${this.prefix}:dirty`;
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
    return `${this.prefix}:scheds:due`;
  }

  /** Pub/sub channel on which a schedule's earlier due time wakes every replica's firing loop. */
  scheduleWake(): string {
    return `${this.prefix}:scheds:wake`;
  }

  /** BullMQ prefix for one task queue: hash-tagged so each queue lives in one slot. */
  queuePrefix(queue: string): string {
    return `${this.prefix}:q:{${queue}}`;
  }
}
