import type { JsonValue } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { TaskAssignment } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { checkQueue, type Principal } from "../../auth.js";
import { logThrottle } from "../../observability/log-throttle.js";
import {
  backoffDelayMs,
  backoffSeed,
  type CompiledTask,
  isRetryable,
  type LoadedWorkflow,
} from "../definitions/index.js";
import { LOCK_GRACE_MS, type PendingOffer } from "../dispatch/index.js";
import { jobSpec, type LeaseDeadline, type TaskRecord } from "../runs/index.js";
import {
  formatLeaseId,
  invalidArgument,
  jobIdOf,
  type LeaseRef,
  parseJobId,
  parseLeaseId,
  payloadBytes,
} from "../shared/index.js";
import { descendantsOf, failureNote } from "./failure-note.js";
import { LeaseTimers } from "./lease-timers.js";
import type { FailureRecorded, LeaseDeps, Leased, TaskFailure } from "./leased.js";
import { type PollRequest, TaskHandout } from "./task-handout.js";

/** A job fetch announced to a queue's dispatcher before the completion that makes it (see announceOffer). */
export interface AnnouncedOffer {
  queue: string;
  offer: PendingOffer;
}

/** Up to this many leaves, the step that completes a run's last task also builds the run's output. */
const SMALL_RUN_LEAVES = 64;

/** The key of a lease in {@link LeaseTimers}. */
function leaseKey(lease: LeaseRef): string {
  return `${lease.runId}|${lease.taskId}|${lease.attempt}|${lease.nonce}`;
}

/**
 * The worker protocol: handing tasks to polls under leases, heartbeats,
 * completions and failures. A lease is a nonce stored with the task by the
 * START step; every later step checks it in the same script that changes the
 * task, so a stale lease can never change anything.
 */
export class LeaseOps {
  /** Timers at the deadlines of the leases this replica handed out or extended. */
  readonly timers = new LeaseTimers();

  /** Hands tasks to polls; the leases it starts end here. */
  private readonly handout: TaskHandout;

  constructor(private readonly deps: LeaseDeps) {
    this.handout = new TaskHandout(deps, {
      watch: (lease, deadline) => this.watch(lease, deadline),
      expire: (leased, startToCloseDeadline) => this.expire(leased, startToCloseDeadline),
      recordFailure: (leased, failure, retryable, deadline) =>
        this.recordFailure(leased, failure, retryable, deadline),
    });
  }

  /**
   * Waits up to `waitMs` for a task of the queue, then adds up to
   * `maxTasks - 1` tasks already queued; empty when none came, the call went
   * away (`signal`) or the daemon began shutting down (`shutdown`).
   */
  poll(req: PollRequest, signal: AbortSignal, shutdown?: AbortSignal): Promise<TaskAssignment[]> {
    return this.handout.poll(req, signal, shutdown);
  }

  /** Extends a lease; reports whether the run was cancelled. */
  async heartbeat(leaseId: string, progress: JsonValue | undefined, principal?: Principal) {
    const { lease, loaded, task } = await this.resolve(leaseId, principal);
    const progressText = progress === undefined ? "" : this.payload(progress, "progress");
    const now = Date.now();
    const reply = await this.deps.steps.heartbeat(
      lease.runId,
      lease,
      now,
      task.heartbeatTimeoutMs,
      progressText,
    );
    const outcome = this.checkOutcome(reply, leaseId);
    if (outcome === "cancel") return { cancelRequested: true, leaseDeadline: undefined };
    const spec = jobSpec(lease.runId, loaded, task);
    // The lease deadline is capped by the attempt's start-to-close deadline; the lock follows it.
    const leaseDeadline = Number(reply[2]);
    const held = await this.deps.queues.extendLock(
      spec,
      String(reply[1]),
      leaseDeadline - now + LOCK_GRACE_MS,
    );
    if (!held) {
      throw new ConnectError(
        `lease "${leaseId}" is no longer valid: the lease expired`,
        Code.FailedPrecondition,
      );
    }
    this.watch(lease, leaseDeadline);
    return { cancelRequested: false, leaseDeadline: timestampFromMs(leaseDeadline) };
  }

  /**
   * Records a task's output and enqueues the tasks it made ready. `announced` is the fetch of a
   * next job its caller announced to `queue`'s dispatcher before this call began (see
   * {@link announceOffer}); used when the task is of that queue, abandoned otherwise.
   */
  async complete(
    leaseId: string,
    output: JsonValue | undefined,
    principal?: Principal,
    announced?: AnnouncedOffer,
  ): Promise<{ cancelRequested: boolean }> {
    const { deps } = this;
    let offer = announced?.offer;
    try {
      const leased = await this.resolve(leaseId, principal);
      const outputText = this.payload(output ?? null, "output");
      // With a backlog on the queue, the job's end also fetches the next job for this replica's
      // polls; a poll arriving meanwhile waits for it rather than fetching its own.
      if (announced?.queue !== leased.task.queue) {
        offer?.abandon();
        offer = deps.dispatchers.backlogged(leased.task.queue)?.expectOffer();
      }
      const completed = await this.recordCompletion(leaseId, leased, outputText, offer);
      this.timers.disarm(leaseKey(leased.lease));
      return completed;
    } finally {
      offer?.abandon();
    }
  }

  /**
   * Announces, before the completions of a task queue's worker are recorded, that each will fetch
   * the next job of the queue when it has a backlog: a poll the same message woke (the Work stream
   * grants credits with its completions) then waits for those jobs instead of fetching its own,
   * which the completions' fetches would leave unused. Undefined when the queue has no backlog here.
   */
  announceOffer(queue: string): AnnouncedOffer | undefined {
    const offer = this.deps.dispatchers.backlogged(queue)?.expectOffer();
    return offer === undefined ? undefined : { queue, offer };
  }

  private async recordCompletion(
    leaseId: string,
    { lease, loaded, task }: Leased,
    outputText: string,
    offer: PendingOffer | undefined,
  ): Promise<{ cancelRequested: boolean }> {
    const { deps } = this;
    const { runId } = lease;
    const reply = await deps.steps.complete(
      runId,
      lease,
      outputText,
      Date.now(),
      deps.limits.runRetentionMs,
      task.children,
      loaded.compiled.leaves.length <= SMALL_RUN_LEAVES ? loaded.compiled.leaves : undefined,
    );
    const outcome = this.checkOutcome(reply, leaseId);
    const spec = jobSpec(runId, loaded, task);
    const token = String(reply[1] ?? "");
    if (outcome === "cancel") {
      await deps.queues.complete(spec, token).catch(() => {});
      return { cancelRequested: true };
    }
    // The job's end and the follow-ups of the step are independent: one round trip for both.
    const followUps = async () => {
      await deps.jobs.enqueue(runId, loaded, reply.slice(2).map(String));
      if (outcome === "last")
        await deps.steps.finish(runId, Date.now(), deps.limits.runRetentionMs, loaded.compiled.leaves);
    };
    const end =
      offer === undefined
        ? deps.queues.complete(spec, token)
        : deps.queues.completeAndFetch(spec, token).then(offer.fetched);
    // A success closes a half-open circuit of the task's queue or handler.
    const circuit = deps.circuits.succeeded(task, loaded).catch((err: unknown) => {
      logThrottle(deps.logger).warn(
        { err, queue: task.queue },
        "could not tell the circuit breaker of a success",
      );
    });
    await Promise.all([
      circuit,
      followUps(),
      end.catch((err) => {
        deps.logger.debug({ err, runId, taskId: task.id }, "job already completed");
      }),
    ]);
    deps.logger.debug({ runId, taskId: task.id, attempt: lease.attempt }, "task completed");
    return { cancelRequested: false };
  }

  /** Records a failed attempt; retried under the task's policy unless not retryable. */
  async fail(leaseId: string, failure: TaskFailure, retryable: boolean, principal?: Principal) {
    const leased = await this.resolve(leaseId, principal);
    if (
      Buffer.byteLength(failure.message) + Buffer.byteLength(failure.details) >
      this.deps.limits.maxPayloadBytes
    ) {
      throw new ConnectError(
        `error: message and details exceed the limit of ${this.deps.limits.maxPayloadBytes} bytes`,
        Code.ResourceExhausted,
      );
    }
    return this.recordFailure(leased, failure, retryable, "check");
  }

  /**
   * Ends an attempt whose lease was lost: its start-to-close deadline (when
   * `startToCloseDeadline` has passed) or its heartbeat timeout expired.
   */
  async expire(
    leased: Leased,
    startToCloseDeadline: number,
    deadline: LeaseDeadline = "ignore",
  ): Promise<number | undefined> {
    const failure =
      startToCloseDeadline > 0 && Date.now() >= startToCloseDeadline
        ? {
            type: "StartToCloseTimeout",
            message: `the attempt did not finish within its start-to-close timeout of ${leased.task.startToCloseMs} ms`,
            details: "",
          }
        : {
            type: "HeartbeatTimeout",
            message: `no heartbeat within ${leased.task.heartbeatTimeoutMs} ms: the lease expired`,
            details: "",
          };
    try {
      return (await this.recordFailure(leased, failure, true, deadline)).aliveUntil;
    } catch (err) {
      if (!(err instanceof ConnectError)) throw err;
      return undefined;
    }
  }

  /**
   * A lease timer fired (see LeaseTimers): ends the attempt when its lease did expire; else returns
   * the deadline to wait for (a heartbeat extended it), or undefined when the attempt is over.
   */
  private async leaseDue(ref: LeaseRef): Promise<number | undefined> {
    const { deps } = this;
    const raw = await deps.redis.hget(deps.keys.run(ref.runId).tasks, ref.taskId);
    if (raw === null) return undefined;
    const record = JSON.parse(raw) as TaskRecord;
    if (record.s !== "R" || record.a !== ref.attempt || record.l !== ref.nonce) return undefined;
    if (record.le !== undefined && record.le > Date.now()) return record.le;
    const loaded = await deps.runWorkflows.of(ref.runId);
    const task = loaded?.compiled.byId.get(ref.taskId);
    if (loaded === undefined || task === undefined) return undefined;
    deps.logger.info({ runId: ref.runId, taskId: ref.taskId, attempt: ref.attempt }, "lease expired");
    return this.expire({ lease: { ...ref, owner: "*" }, loaded, task }, record.sc ?? 0, "expired");
  }

  /** Watches a lease until its deadline on this replica (see LeaseTimers). */
  private watch(lease: LeaseRef, deadline: number): void {
    const ref = { runId: lease.runId, taskId: lease.taskId, attempt: lease.attempt, nonce: lease.nonce };
    this.timers.arm(leaseKey(ref), deadline, () => this.leaseDue(ref));
  }

  /**
   * Called when this replica's stalled checker put back a job whose lock expired: the lease the
   * task's record holds is lost, unless that lease's fetch holds the job's lock now — the job was
   * fetched again and started before this ran, and the record is the new lease's.
   */
  onStalled(queue: string, jobId: string): Promise<void> {
    const ids = parseJobId(jobId);
    if (ids === undefined) return Promise.resolve();
    return (async () => {
      const loaded = await this.deps.runWorkflows.of(ids.runId);
      const task = loaded?.compiled.byId.get(ids.taskId);
      const raw = await this.deps.redis.hget(this.deps.keys.run(ids.runId).tasks, ids.taskId);
      if (loaded === undefined || task === undefined || raw === null) return;
      const record = JSON.parse(raw) as TaskRecord;
      if (record.s !== "R" || record.l === undefined) return;
      const lock = await this.deps.redis.get(this.deps.keys.jobLock(queue, jobId));
      if (lock !== null && lock === record.k) return;
      this.deps.logger.info(
        { runId: ids.runId, taskId: ids.taskId, attempt: record.a, queue },
        "lease expired",
      );
      await this.expire(
        { lease: { ...ids, attempt: record.a, nonce: record.l, owner: "*" }, loaded, task },
        record.sc ?? 0,
      );
    })().catch((err) => logThrottle(this.deps.logger).warn({ err, jobId }, "handling a stalled job failed"));
  }

  private async recordFailure(
    { lease, loaded, task }: Leased,
    failure: TaskFailure,
    retryable: boolean,
    deadline: LeaseDeadline,
  ): Promise<FailureRecorded> {
    const { deps } = this;
    const { runId } = lease;
    const policy = task.retry;
    const retry = isRetryable(policy, failure.type, retryable, lease.attempt);
    const now = Date.now();
    const delayMs = retry
      ? backoffDelayMs(policy, lease.attempt, backoffSeed(runId, task.id, lease.attempt))
      : 0;
    const continueOnFailure = loaded.workflow.definition?.continueOnFailure === true;
    const reply = await deps.steps.fail(
      runId,
      lease,
      failure,
      retry ? "retry" : "final",
      now + delayMs,
      now,
      deps.limits.runRetentionMs,
      continueOnFailure,
      deadline,
      !retry && continueOnFailure ? descendantsOf(loaded, task.id) : [],
      failureNote(deps, { lease, loaded, task }, failure, retry, now),
      task.scheduleToStartMs,
    );
    if (reply[0] === "alive")
      return { willRetry: false, nextAttemptTime: undefined, aliveUntil: Number(reply[1]) };
    if (reply[0] === "early" || reply[0] === "noop")
      return { willRetry: false, nextAttemptTime: undefined, notBefore: Number(reply[1] ?? 0) || undefined };
    const outcome = this.checkOutcome(reply, formatLeaseId(lease));
    this.timers.disarm(leaseKey(lease));
    const spec = jobSpec(runId, loaded, task);
    const token = String(reply[1] ?? "");
    const log = {
      runId,
      taskId: task.id,
      attempt: lease.attempt,
      queue: task.queue,
      errorType: failure.type,
    };
    if (outcome === "retry" || outcome === "failed") {
      await deps.circuits
        .failed(task, loaded, leaseKey(lease), failure.type, retryable)
        .catch((err: unknown) =>
          logThrottle(deps.logger).warn(
            { err, queue: task.queue },
            "could not count a failure for the circuit breaker",
          ),
        );
    }
    if (outcome === "retry") {
      deps.logger.info({ ...log, delayMs }, "task attempt failed; retrying");
      await deps.queues.fail(spec, token, failure.message, true, delayMs).catch((err) => {
        deps.logger.debug({ err, ...log }, "job lock already lost; it will be redelivered");
      });
      return { willRetry: true, nextAttemptTime: timestampFromMs(now + delayMs) };
    }
    if (outcome === "failed") {
      deps.logger.info(log, "task failed");
      deps.failureStats.countFailure(task.queue);
      if (token === "") await deps.queues.remove(task.queue, jobIdOf(runId, task.id)).catch(() => {});
      else await deps.queues.fail(spec, token, failure.message, false, 0).catch(() => {});
      await deps.jobs.drop(runId, loaded, reply.slice(2));
    } else if (outcome === "cancel") {
      await deps.queues.complete(spec, token).catch(() => {});
    }
    return { willRetry: false, nextAttemptTime: undefined };
  }

  /**
   * Fails a task no worker started within its schedule-to-start timeout (final). Returns the task's
   * deadline when the timer fired before it (it was armed for an earlier queueing of the task).
   */
  async scheduleToStartExpired(
    runId: string,
    loaded: LoadedWorkflow,
    task: CompiledTask,
  ): Promise<number | undefined> {
    const failure = {
      type: "ScheduleToStartTimeout",
      message: `no worker started the task within its schedule-to-start timeout of ${task.scheduleToStartMs} ms`,
      details: "",
    };
    try {
      const recorded = await this.recordFailure(
        { lease: { runId, taskId: task.id, attempt: 0, nonce: "*" }, loaded, task },
        failure,
        false,
        "ignore",
      );
      return recorded.notBefore;
    } catch (err) {
      if (!(err instanceof ConnectError)) throw err;
      return undefined;
    }
  }

  /** Parses a lease id and finds its task; the caller must be allowed on the task's queue. */
  private async resolve(leaseId: string, principal: Principal | undefined): Promise<Leased> {
    if (leaseId === "") throw invalidArgument([{ field: "lease_id", description: "is required" }]);
    const lease = parseLeaseId(leaseId);
    if (lease === undefined) {
      throw invalidArgument([{ field: "lease_id", description: "is not a lease id issued by PollTask" }]);
    }
    const loaded = await this.deps.runWorkflows.of(lease.runId);
    const task = loaded?.compiled.byId.get(lease.taskId);
    if (loaded === undefined || task === undefined) {
      throw new ConnectError(`lease "${leaseId}" not found`, Code.NotFound);
    }
    checkQueue(principal, task.queue);
    return { lease: { ...lease, owner: principal?.name }, loaded, task };
  }

  private checkOutcome(reply: (string | number)[], leaseId: string): string {
    const outcome = String(reply[0]);
    if (outcome === "notfound") throw new ConnectError(`lease "${leaseId}" not found`, Code.NotFound);
    if (outcome === "denied") {
      throw new ConnectError(`lease "${leaseId}" was taken by another token`, Code.PermissionDenied);
    }
    if (outcome === "stale") {
      throw new ConnectError(`lease "${leaseId}" is no longer valid: ${reply[1]}`, Code.FailedPrecondition);
    }
    return outcome;
  }

  private payload(value: JsonValue, field: string): string {
    const text = JSON.stringify(value);
    const size = payloadBytes(text, this.deps.limits.maxPayloadBytes, value);
    if (size > this.deps.limits.maxPayloadBytes) {
      throw new ConnectError(
        `${field}: ${size} bytes exceeds the limit of ${this.deps.limits.maxPayloadBytes} bytes`,
        Code.ResourceExhausted,
      );
    }
    return text;
  }
}
