import { defineScript, isCluster, type RedisClient } from "../../redis/redis.js";
import { keySlot } from "../../redis/slots.js";
import type { Keys } from "../shared/index.js";
import { RESUME } from "./resume-script.js";
import { RunMarks } from "./run-marks.js";
import { CANCEL, FINISH, TRIGGER, WAIT, withShardedPublish } from "./run-scripts.js";
import { COMPLETE, FAIL, HEARTBEAT, RELEASE, START } from "./task-scripts.js";
import { normalize, type Reply, TickBatches } from "./tick-batches.js";

type ScriptCaller = (args: (string | number)[]) => Promise<unknown>;

/**
 * How a failure treats its lease's deadline: a worker's report is refused once the lease
 * expired ("check"); the daemon's own decisions take any lease ("ignore"); a lease timer ends
 * only a lease that did expire ("expired"), else the step answers {'alive', deadline}.
 */
export type LeaseDeadline = "check" | "ignore" | "expired";

const DEADLINE_ARG: Record<LeaseDeadline, string> = { check: "1", ignore: "0", expired: "2" };

/**
 * The run scripts. Each takes three KEYS per run; the batched ones (TRIGGER, START, COMPLETE) carry
 * the steps of several runs in one call (see run-scripts.ts and task-scripts.ts), the others one run's step.
 * On a Redis Cluster they announce new events with SPUBLISH (sharded pub/sub: only the nodes of
 * the run's shard see it) rather than PUBLISH, which a Cluster sends to every node.
 */
const SCRIPTS = {
  weftTrigger: TRIGGER,
  weftStart: START,
  weftComplete: COMPLETE,
  weftRelease: RELEASE,
  weftHeartbeat: HEARTBEAT,
  weftFail: FAIL,
  weftCancel: CANCEL,
  weftFinish: FINISH,
  weftWait: WAIT,
  weftResume: RESUME,
} as const;

type ScriptName = keyof typeof SCRIPTS;

/** Lease coordinates passed to every leased step. */
export interface LeaseArgs {
  taskId: string;
  attempt: number;
  nonce: string;
  /** Name of the token presenting the lease; a lease taken by another token is refused. */
  owner?: string;
}

/** What an assignment may take, as the START step checks it (see task-scripts.ts). */
export interface StartBudget {
  /** Most bytes the run input and the parents' outputs may hold together (as stored, JSON). */
  limit: number;
  /** The poll the assignment belongs to: its assignments share `left`. */
  group: string;
  /** Bytes the poll's answer has left. */
  left: number;
  /** Bytes of the assignment besides the run input and the parents' outputs. */
  base: number;
}

/** A task that failed for good, as its dead-letter entry records it (see FAIL in task-scripts.ts). */
export interface DeadLetterNote {
  queue: string;
  handler: string;
  /** The message and details kept in the attempt's history (cut short). */
  historyMessage: string;
  historyDetails: string;
  /** Sent before the step, in the same write: the ZADDs that enter the entry in its indexes. */
  index?: (redis: RedisClient) => Promise<unknown>[];
}

/** One task a resume runs again: its parents not succeeded (0: queued at once), or "-" for a root. */
export interface ResumedTask {
  id: string;
  parents: number | "-";
}

/** The lease argument of the scripts: "nonce" or "nonce|owner". */
function leaseArg(lease: LeaseArgs): string {
  return lease.owner ? `${lease.nonce}|${lease.owner}` : lease.nonce;
}

/**
 * Typed calls of the run scripts. A step that may leave a follow-up (enqueueing
 * jobs, finishing the run) is sent in one write with a ZADD that marks its run
 * as recently touched, so that the reconciler can finish that follow-up when a
 * crash cuts it short; starts, heartbeats, waits and the completions of
 * childless tasks of small workflows (whose step finishes the run when it
 * completes the last task) leave none. On a Redis Cluster the mark lives on
 * another slot than the run (often another node), where no order between the
 * two holds: the step is sent once the mark is written.
 * A run leaves that set as soon as a completion, FINISH or CANCEL ends it: a
 * finished run needs no follow-up (a job left behind is dropped when a poll
 * fetches it). A run that ends in a failure stays until the reconciler finds it
 * quiet and finished, and forgets it.
 */
export class RunSteps {
  /** The marks and index entries that go with the steps. */
  private readonly marks: RunMarks;
  /** Whether Redis is a Cluster: batches by slot, marks written before their steps, SPUBLISH. */
  private readonly cluster: boolean;
  private readonly triggers: TickBatches;
  private readonly starts: TickBatches;
  private readonly completions: TickBatches;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    /** Largest run output (JSON bytes) the steps build; a larger one is left unbuilt, its size kept. */
    private readonly outputLimit = Number.MAX_SAFE_INTEGER,
  ) {
    this.cluster = isCluster(redis);
    this.marks = new RunMarks(redis, keys);
    // The number of keys (three per run) is each call's first argument.
    for (const [name, lua] of Object.entries(SCRIPTS)) {
      defineScript(redis, name, this.cluster ? withShardedPublish(lua) : lua);
    }
    // One script call per slot and tick on a Cluster (a script's keys share a slot), one per tick
    // otherwise. On a Cluster the tick's marks and index entries, on other slots, are written first,
    // one ZADD per shard for the whole tick; on one server they go in the same write as the steps.
    const cluster = this.cluster;
    const groupOf = cluster ? (runId: string) => keySlot(`{${runId}}`) : undefined;
    const first = (indexes: boolean) =>
      cluster
        ? (batches: { runIds: string[]; marked: string[] }[]) => this.writeFirst(batches, indexes)
        : undefined;
    this.triggers = new TickBatches(
      (runIds, args, marked) =>
        cluster
          ? this.call("weftTrigger", runIds, args, [])
          : this.call("weftTrigger", runIds, args, marked, () => this.marks.enter(runIds)),
      (reply) => reply.slice(1).map(normalize),
      groupOf,
      first(true),
    );
    this.starts = new TickBatches(
      (runIds, args) => this.call("weftStart", runIds, args, []),
      // The run's input comes once; each started task's reply carries it, as the step's callers expect.
      (reply) =>
        reply.slice(1).map((one) => {
          const r = normalize(one);
          if (r[0] === "ok") r[2] = reply[0] ?? "";
          return r;
        }),
      groupOf,
    );
    this.completions = new TickBatches(
      (runIds, args, marked) => this.call("weftComplete", runIds, args, cluster ? [] : marked),
      (reply) => reply.slice(1).map(normalize),
      groupOf,
      first(false),
    );
  }

  /**
   * Calls a step script with the keys of `runIds` (one run, or the runs of a batch, in order), and
   * marks the runs of `marked` as recently touched in the same round trip.
   */
  private async call(
    name: ScriptName,
    runIds: string[],
    args: (string | number)[],
    marked: readonly string[] = runIds,
    before?: (redis: RedisClient) => Promise<unknown>[],
  ): Promise<Reply> {
    // One array argument: ioredis flattens it, and huge runs would overflow a spread.
    const keyArgs: (string | number)[] = [runIds.length * 3];
    for (const id of runIds) {
      const k = this.keys.run(id);
      keyArgs.push(k.run, k.tasks, k.events);
    }
    const fn = (this.redis as unknown as Record<ScriptName, ScriptCaller>)[name];
    if (marked.length === 0 && before === undefined)
      return normalize(await fn.call(this.redis, keyArgs.concat(args)));
    // Issued in the same tick, so auto-pipelining sends them in one write with every other step of the
    // tick, and Redis runs them in this order: what `before` adds, the mark, then the step.
    const first = [...(before?.(this.redis) ?? []), ...this.marks.mark(marked, Date.now())];
    if (this.cluster) {
      // Other slots, other nodes: nothing orders these writes and the step but waiting for them.
      await Promise.all(first);
      return normalize(await fn.call(this.redis, keyArgs.concat(args)));
    }
    const step = fn.call(this.redis, keyArgs.concat(args));
    const [, reply] = await Promise.all([Promise.all(first), step]);
    return normalize(reply);
  }

  /** On a Cluster: the marks (and index entries) of a tick's batched steps, written before the steps. */
  private async writeFirst(
    batches: { runIds: string[]; marked: string[] }[],
    indexes: boolean,
  ): Promise<void> {
    const writes = indexes ? this.marks.enter(batches.flatMap((b) => b.runIds)) : [];
    writes.push(
      ...this.marks.mark(
        batches.flatMap((b) => b.marked),
        Date.now(),
      ),
    );
    await Promise.all(writes);
  }

  trigger(
    runId: string,
    workflow: string,
    version: number,
    input: string,
    now: number,
    idempotencyKey: string,
    tasks: { id: string; parents: number }[],
    indexes: string[],
    schedule?: { id: string; fireTime: number },
  ): Promise<Reply> {
    const args: (string | number)[] = [
      runId,
      workflow,
      version,
      input,
      now,
      idempotencyKey,
      schedule?.id ?? "",
      schedule?.fireTime ?? "",
      tasks.length,
    ];
    for (const t of tasks) args.push(t.id, t.parents);
    // The run enters its list indexes in the same round trip, before it exists (ListRuns skips ids without a run).
    this.marks.willEnter(runId, indexes, now);
    return this.triggers.add(runId, args, true);
  }

  /**
   * Starts a task. The starts of one run asked for in the same tick (a batch
   * poll's handovers) go to Redis in one script call.
   */
  start(
    runId: string,
    taskId: string,
    nonce: string,
    token: string,
    workerId: string,
    now: number,
    leaseMs: number,
    startToCloseMs: number,
    parents: string[],
    budget: StartBudget,
  ): Promise<Reply> {
    // A start leaves no follow-up: a job whose task start was lost stalls and comes back.
    return this.starts.add(
      runId,
      [
        taskId,
        nonce,
        token,
        workerId,
        now,
        leaseMs,
        startToCloseMs,
        parents.length,
        ...parents,
        budget.limit,
        budget.group,
        budget.left,
        budget.base,
      ],
      false,
    );
  }

  release(runId: string, lease: LeaseArgs, now: number): Promise<Reply> {
    return this.call("weftRelease", [runId], [lease.taskId, lease.attempt, lease.nonce, now]);
  }

  heartbeat(runId: string, lease: LeaseArgs, now: number, leaseMs: number, progress: string): Promise<Reply> {
    return this.call(
      "weftHeartbeat",
      [runId],
      [lease.taskId, lease.attempt, leaseArg(lease), now, leaseMs, progress],
      [],
    );
  }

  async complete(
    runId: string,
    lease: LeaseArgs,
    output: string,
    now: number,
    retentionMs: number,
    children: string[],
    leaves: string[] | undefined,
  ): Promise<Reply> {
    const args: (string | number)[] = [
      lease.taskId,
      lease.attempt,
      leaseArg(lease),
      output,
      now,
      retentionMs,
      children.length,
    ];
    // A completion whose task has children, or that may leave the run's end to FINISH (no leaves
    // passed), has a follow-up a crash could cut short; one of a childless task of a small
    // workflow has none (its step finishes the run when it makes it complete).
    const reply = await this.completions.add(
      runId,
      args.concat(children, leaves === undefined ? ["-"] : [leaves.length, ...leaves, this.outputLimit]),
      children.length > 0 || leaves === undefined,
    );
    if (reply[0] === "done") this.marks.settled(runId);
    return reply;
  }

  /**
   * Records a failed attempt (see FAIL in task-scripts.ts). `note` says what the task's dead-letter
   * entry holds should the step fail it for good; its index ZADDs go first, in the same write.
   */
  fail(
    runId: string,
    lease: LeaseArgs,
    error: { type: string; message: string; details: string },
    mode: "retry" | "final",
    nextAttemptMs: number,
    now: number,
    retentionMs: number,
    continueOnFailure: boolean,
    deadline: LeaseDeadline,
    descendants: string[],
    note: DeadLetterNote,
    scheduleToStartMs = 0,
  ): Promise<Reply> {
    return this.call(
      "weftFail",
      [runId],
      [
        lease.taskId,
        lease.attempt,
        leaseArg(lease),
        error.type,
        error.message,
        error.details,
        mode,
        nextAttemptMs,
        now,
        retentionMs,
        continueOnFailure ? "1" : "0",
        DEADLINE_ARG[deadline],
        note.historyMessage,
        note.historyDetails,
        note.queue,
        note.handler,
        scheduleToStartMs,
        descendants.length,
      ].concat(descendants),
      [runId],
      note.index,
    );
  }

  /**
   * Resumes a finished run (see RESUME in resume-script.ts). `resumeCount`: the finish to resume
   * (undefined: whichever). Marks the run as recently touched: the reconciler queues what a crash
   * left unqueued.
   */
  resume(
    runId: string,
    resumeCount: number | undefined,
    idempotencyKey: string,
    now: number,
    message: string,
    tasks: readonly ResumedTask[],
  ): Promise<Reply> {
    const args: (string | number)[] = [resumeCount ?? "", idempotencyKey, now, message, tasks.length];
    for (const t of tasks) args.push(t.id, t.parents);
    return this.call("weftResume", [runId], args);
  }

  wait(runId: string, taskId: string, reason: string, now: number): Promise<Reply> {
    return this.call("weftWait", [runId], [taskId, reason, now], []);
  }

  async finish(runId: string, now: number, retentionMs: number, leaves: string[]): Promise<Reply> {
    const reply = await this.call(
      "weftFinish",
      [runId],
      ([now, retentionMs, leaves.length] as (string | number)[]).concat(leaves, this.outputLimit),
    );
    if (reply[0] === 1) this.marks.settled(runId);
    return reply;
  }

  /** Cancels a run (see CANCEL); with `resumeCount`, only while it is in that round. */
  async cancel(
    runId: string,
    reason: string,
    now: number,
    retentionMs: number,
    status: "C" | "X",
    resumeCount?: number,
  ): Promise<Reply> {
    const reply = await this.call(
      "weftCancel",
      [runId],
      [reason, now, retentionMs, status, resumeCount ?? ""],
    );
    if (reply[0] === "cancelled") this.marks.settled(runId);
    return reply;
  }
}
