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

  /** BullMQ prefix for one task queue: hash-tagged so each queue lives in one slot. */
  queuePrefix(queue: string): string {
    return `${this.prefix}:q:{${queue}}`;
  }
}
