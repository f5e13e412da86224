import type { Redis } from "ioredis";
import type { Keys, RunKeys } from "./keys.js";
import { CANCEL, COMPLETE, FAIL, FINISH, HEARTBEAT, RELEASE, START, TRIGGER, WAIT } from "./run-scripts.js";

type Reply = (string | number)[];
type ScriptCaller = (args: (string | number)[]) => Promise<unknown>;

const SCRIPTS = {
  weftTrigger: TRIGGER,
  weftStart: START,
  weftRelease: RELEASE,
  weftHeartbeat: HEARTBEAT,
  weftComplete: COMPLETE,
  weftFail: FAIL,
  weftCancel: CANCEL,
  weftFinish: FINISH,
  weftWait: WAIT,
} as const;

type ScriptName = keyof typeof SCRIPTS;

/** A task start waiting to be sent with the others of its run. */
interface PendingStart {
  args: (string | number)[];
  resolve: (reply: Reply) => void;
  reject: (err: unknown) => void;
}

/** Lease coordinates passed to every leased step. */
export interface LeaseArgs {
  taskId: string;
  attempt: number;
  nonce: string;
  /** Name of the token presenting the lease; a lease taken by another token is refused. */
  owner?: string;
}

/** The lease argument of the scripts: "nonce" or "nonce|owner". */
function leaseArg(lease: LeaseArgs): string {
  return lease.owner ? `${lease.nonce}|${lease.owner}` : lease.nonce;
}

/**
 * Typed calls of the run scripts. Each call is sent in one write with a
 * ZADD that marks the run as recently touched, so that the reconciler can
 * finish a step whose follow-up (enqueueing jobs) was cut short by a crash.
 */
export class RunSteps {
  /** Starts asked for in this tick, by run; sent at the end of the tick. */
  private readonly starts = new Map<string, PendingStart[]>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {
    for (const [name, lua] of Object.entries(SCRIPTS)) {
      if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: 5, lua });
    }
  }

  private async call(
    name: ScriptName,
    runId: string,
    args: (string | number)[],
    mark = true,
    before?: (redis: Redis) => Promise<unknown>[],
  ): Promise<Reply> {
    const k = this.keys.run(runId);
    // One array argument: ioredis flattens it, and huge runs would overflow a spread.
    const keyArgs: (string | number)[] = [k.run, k.tasks, k.deps, k.outputs, k.events];
    const fn = (this.redis as unknown as Record<ScriptName, ScriptCaller>)[name];
    if (!mark) return normalize(await fn.call(this.redis, keyArgs.concat(args)));
    // Issued in the same tick, so auto-pipelining sends them in one write with every other step of the
    // tick, and Redis runs them in this order: what `before` adds, the mark, then the step.
    const first = [
      ...(before?.(this.redis) ?? []),
      this.redis.zadd(this.keys.dirtyRuns(), Date.now(), runId),
    ];
    const step = fn.call(this.redis, keyArgs.concat(args));
    const [, reply] = await Promise.all([Promise.all(first), step]);
    return normalize(reply);
  }

  runKeys(runId: string): RunKeys {
    return this.keys.run(runId);
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
  ): Promise<Reply> {
    const args: (string | number)[] = [runId, workflow, version, input, now, idempotencyKey, tasks.length];
    for (const t of tasks) args.push(t.id, t.parents);
    // The run enters its list indexes in the same round trip, before it exists (ListRuns skips ids without a run).
    return this.call("weftTrigger", runId, args, true, (redis) =>
      indexes.map((index) => redis.zadd(index, "NX", now, runId)),
    );
  }

  /**
   * Starts a task. The starts of one run asked for in the same tick (a batch
   * poll's handovers) go to Redis as one script call.
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
  ): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const start: PendingStart = {
        args: [taskId, nonce, token, workerId, now, leaseMs, startToCloseMs, parents.length, ...parents],
        resolve,
        reject,
      };
      const queued = this.starts.get(runId);
      if (queued !== undefined) {
        queued.push(start);
        return;
      }
      this.starts.set(runId, [start]);
      // After every microtask of this tick: the other handovers of a poll have asked by then.
      if (this.starts.size === 1) process.nextTick(() => this.flushStarts());
    });
  }

  private flushStarts(): void {
    const byRun = [...this.starts];
    this.starts.clear();
    for (const [runId, starts] of byRun) {
      const args: (string | number)[] = [starts.length];
      for (const { args: a } of starts) for (const arg of a) args.push(arg);
      this.call("weftStart", runId, args, false).then(
        (reply) => {
          // The run's input is sent once; each started task's reply carries it, as the step's callers expect.
          const input = reply[0] ?? "";
          starts.forEach((start, i) => {
            const one = normalize(reply[i + 1]);
            if (one[0] === "ok") one[2] = input;
            start.resolve(one);
          });
        },
        (err: unknown) => {
          for (const start of starts) start.reject(err);
        },
      );
    }
  }

  release(runId: string, lease: LeaseArgs, now: number): Promise<Reply> {
    return this.call("weftRelease", runId, [lease.taskId, lease.attempt, lease.nonce, now]);
  }

  heartbeat(runId: string, lease: LeaseArgs, now: number, leaseMs: number, progress: string): Promise<Reply> {
    return this.call(
      "weftHeartbeat",
      runId,
      [lease.taskId, lease.attempt, leaseArg(lease), now, leaseMs, progress],
      false,
    );
  }

  complete(
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
    return this.call(
      "weftComplete",
      runId,
      args.concat(children, leaves === undefined ? ["-"] : [leaves.length, ...leaves]),
    );
  }

  fail(
    runId: string,
    lease: LeaseArgs,
    error: { type: string; message: string; details: string },
    mode: "retry" | "final",
    nextAttemptMs: number,
    now: number,
    retentionMs: number,
    continueOnFailure: boolean,
    checkDeadline: boolean,
    descendants: string[],
  ): Promise<Reply> {
    return this.call(
      "weftFail",
      runId,
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
        checkDeadline ? "1" : "0",
        descendants.length,
      ].concat(descendants),
    );
  }

  wait(runId: string, taskId: string, reason: string, now: number): Promise<Reply> {
    return this.call("weftWait", runId, [taskId, reason, now], false);
  }

  finish(runId: string, now: number, retentionMs: number, leaves: string[]): Promise<Reply> {
    return this.call(
      "weftFinish",
      runId,
      ([now, retentionMs, leaves.length] as (string | number)[]).concat(leaves),
    );
  }

  cancel(runId: string, reason: string, now: number, retentionMs: number, status: "C" | "X"): Promise<Reply> {
    return this.call("weftCancel", runId, [reason, now, retentionMs, status]);
  }
}

function normalize(value: unknown): Reply {
  if (Array.isArray(value)) return value as Reply;
  return [value as number];
}
