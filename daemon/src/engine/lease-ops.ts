import { create, type JsonValue } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type TaskAssignment, TaskAssignmentSchema } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { checkQueue, type Principal } from "../auth.js";
import { logThrottle } from "../log-throttle.js";
import { payloadBytes } from "./answer-size.js";
import { AssignmentBudget } from "./assignment-budget.js";
import type { CompiledTask } from "./dag.js";
import type { PendingOffer } from "./dispatcher.js";
import { type Engine, LOCK_GRACE_MS } from "./engine.js";
import { formatLeaseId, jobIdOf, type LeaseRef, newLeaseNonce, parseJobId, parseLeaseId } from "./ids.js";
import type { FetchedJob } from "./jobs.js";
import { KeyLimiter } from "./key-limiter.js";
import { LeaseTimers } from "./lease-timers.js";
import { backoffDelayMs, backoffSeed } from "./retry-policy.js";
import type { LeaseArgs, LeaseDeadline } from "./run-steps.js";
import type { TaskRecord } from "./run-view.js";
import { jsonValue } from "./run-view.js";
import { invalidArgument } from "./violations.js";
import type { LoadedWorkflow } from "./workflow-store.js";

/** The reason a poll's wait ends (made once: an abort without a reason allocates a DOMException). */
const WAIT_OVER = new Error("poll wait over");

/** Up to this many leaves, the step that completes a run's last task also builds the run's output. */
const SMALL_RUN_LEAVES = 64;

/** What a poll asks for. */
export interface PollRequest {
  queue: string;
  workerId: string;
  handlers: string[];
  waitMs: number;
  /** Most assignments to return; the wait is for the first one only. Default 1. */
  maxTasks?: number;
  /**
   * When the poll had to wait, whether the first task that came waits for more queued behind it
   * (up to `maxTasks`) before the poll returns. Default true: a unary poll answers once. A caller
   * that polls again at once (the Work stream) passes false, so that a task that ends a wait
   * reaches its worker without waiting for the fetches that follow it.
   */
  topUp?: boolean;
  /** Name of the token polling; its leases answer only to it. Empty: authentication is off. */
  owner?: string;
  /** The liveness of the connection the poll came on: a task goes only to a peer that is alive. */
  peer?: PeerCheck;
}

/** What a poll can tell of its client's connection (see PeerLiveness in peer-liveness.ts). */
export interface PeerCheck {
  /** True while the peer failed a PING and has not shown life since: its polls end empty. */
  readonly suspect: boolean;
  /** Whether a task may go to the peer now (it showed life recently, or answers a PING). */
  usable(): Promise<boolean>;
}

/** A task failure reported by a worker or detected by the daemon. */
export interface TaskFailure {
  type: string;
  message: string;
  details: string;
}

/** What recording a failure led to. */
interface FailureRecorded {
  willRetry: boolean;
  nextAttemptTime: ReturnType<typeof timestampFromMs> | undefined;
  /** Set when a lease timer found the lease extended: its new deadline. */
  aliveUntil?: number;
}

/** The key of a lease in {@link LeaseTimers}. */
function leaseKey(lease: LeaseRef): string {
  return `${lease.runId}|${lease.taskId}|${lease.attempt}|${lease.nonce}`;
}

interface Leased {
  lease: LeaseRef & LeaseArgs;
  loaded: LoadedWorkflow;
  task: CompiledTask;
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

  constructor(private readonly engine: Engine) {}

  /**
   * Waits up to `waitMs` for a task of the queue, then adds up to
   * `maxTasks - 1` tasks already queued; empty when none came, the call went
   * away (`signal`) or the daemon began shutting down (`shutdown`).
   */
  async poll(req: PollRequest, signal: AbortSignal, shutdown?: AbortSignal): Promise<TaskAssignment[]> {
    const waitMs = Math.min(req.waitMs, this.engine.options.pollWaitCapMs);
    // One controller and one timer per poll: ends the wait at its deadline or when the call goes away.
    const wait = new AbortController();
    const stop = () => wait.abort(WAIT_OVER);
    const timer = setTimeout(stop, Math.max(waitMs, 1));
    signal.addEventListener("abort", stop, { once: true });
    shutdown?.addEventListener("abort", stop, { once: true });
    if (shutdown?.aborted) stop();
    try {
      const dispatcher = this.engine.dispatcher(req.queue);
      const max = Math.max(1, req.maxTasks ?? 1);
      while (!wait.signal.aborted && req.peer?.suspect !== true) {
        // Each fetched job is handed over at once, while the next ones are still being fetched.
        const handing: Promise<TaskAssignment | undefined>[] = [];
        // The assignments of one answer stay within the answer limit together.
        const budget = new AssignmentBudget(this.engine.maxResponseBytes);
        const hand = (jobs: FetchedJob[]) => {
          for (const fetched of jobs) handing.push(this.handOver(fetched, req, signal, budget));
        };
        // A batch poll with no other poll waiting first takes what is queued without blocking: a
        // backlog is served in parallel rounds rather than one blocking fetch and then the rest.
        if (max > 1 && !dispatcher.busy) await dispatcher.grab(max, hand);
        if (handing.length === 0) {
          const first = await dispatcher.take(wait.signal);
          if (first === undefined) return [];
          hand([first]);
          if (max > 1 && req.topUp !== false) await dispatcher.grab(max - 1, hand);
        }
        // One hand-over failing (Redis went away meanwhile) does not lose the others' leases.
        const settled = await Promise.allSettled(handing);
        const assignments: TaskAssignment[] = [];
        let failure: unknown;
        for (const s of settled) {
          if (s.status === "rejected") failure ??= s.reason;
          else if (s.value !== undefined) assignments.push(s.value);
        }
        if (assignments.length > 0) return assignments;
        if (failure !== undefined) throw failure;
      }
      return [];
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", stop);
      shutdown?.removeEventListener("abort", stop);
    }
  }

  /**
   * Starts a fetched job's task under a new lease and builds its assignment; undefined when the
   * job went back or elsewhere. A failure (Redis went away mid-way) puts the job back in its
   * queue, unused, as soon as Redis takes it, and is thrown.
   */
  private async handOver(
    fetched: FetchedJob,
    req: PollRequest,
    signal: AbortSignal,
    budget: AssignmentBudget,
  ): Promise<TaskAssignment | undefined> {
    try {
      return await this.startTask(fetched, req, signal, budget);
    } catch (err) {
      this.engine.dispatcher(req.queue).putBack(fetched);
      throw err;
    }
  }

  private async startTask(
    { job, token }: FetchedJob,
    req: PollRequest,
    signal: AbortSignal,
    budget: AssignmentBudget,
  ): Promise<TaskAssignment | undefined> {
    const { engine } = this;
    const ids = parseJobId(job.id ?? "");
    const loaded =
      ids === undefined
        ? undefined
        : await engine.workflows.get(job.data.w, job.data.v).catch((err: unknown) => {
            // Only a workflow that is not there makes the job foreign; Redis errors go up.
            if (err instanceof ConnectError && err.code === Code.NotFound) return undefined;
            throw err;
          });
    const task = ids === undefined ? undefined : loaded?.compiled.byId.get(ids.taskId);
    if (ids === undefined || loaded === undefined || task === undefined) {
      logThrottle(engine.logger).warn(
        { jobId: job.id, queue: req.queue },
        "dropping a job that is not a Weft task",
      );
      await job.moveToCompleted(null, token, false).catch(() => {});
      return undefined;
    }
    const { runId, taskId } = ids;
    const spec = engine.jobSpec(runId, loaded, task);
    // A poll whose client went away, or whose connection has gone quiet and does not answer a
    // PING (a cut link, a frozen host), gets no task: it goes back at once for a live poll.
    if (signal.aborted || (req.peer !== undefined && !(await req.peer.usable()))) {
      await job.moveToWait(token).catch(() => {});
      return undefined;
    }
    // Rate limits: the queue's, then the task's key. The slot's time is the attempt's start time.
    let startedAt: number | undefined;
    const queueLimit = await engine.admin.rateLimitOf(task.queue);
    if (queueLimit !== undefined) {
      const slot = await engine.limiter.acquireQueue(task.queue, queueLimit, `${job.id}.${newLeaseNonce()}`);
      if (slot.waitMs > 0) {
        engine.dispatcher(task.queue).holdFor(slot.waitMs);
        await job.moveToWait(token).catch(() => {});
        return undefined;
      }
      startedAt = slot.at;
    }
    if (task.rateLimitKey !== "" && engine.limiter.active) {
      const at = await this.underKeyLimit(runId, task, job, token);
      if (at === undefined) return undefined;
      startedAt ??= at;
    }
    // The job came under a short lock (a replica that dies before it starts the task strands it
    // for that long, not for a lease); the lease's lock outlives the lease by a grace period. Sent
    // with the step that starts the task, not after it.
    const locking = engine.queues.extendLock(spec, token, task.heartbeatTimeoutMs + LOCK_GRACE_MS);
    locking.catch(() => {});
    for (let round = 0; round < 3; round++) {
      const nonce = newLeaseNonce();
      const now = round === 0 && startedAt !== undefined ? startedAt : Date.now();
      const reply = await engine.steps.start(
        runId,
        taskId,
        req.owner ? `${nonce}|${req.owner}` : nonce,
        token,
        req.workerId,
        now,
        task.heartbeatTimeoutMs,
        task.startToCloseMs,
        task.parents,
        budget.startBudget(loaded.compiled, task),
      );
      const outcome = reply[0];
      if (outcome === "full") {
        // No room left in the poll's answer: the job goes straight back, nothing used.
        await job.moveToWait(token).catch(() => {});
        return undefined;
      }
      if (outcome === "ok" || outcome === "big") {
        const lease: LeaseRef & LeaseArgs = {
          runId,
          taskId,
          attempt: Number(reply[1]),
          nonce,
          owner: req.owner,
        };
        const leaseDeadline = Number(reply[3]);
        engine.rememberRun(runId, loaded.workflow.name, loaded.workflow.version);
        if (!(await locking)) {
          // The short lock ran out first (a very slow moment): the job went back to its queue and
          // is another poll's now. The attempt goes back unused.
          await engine.steps.release(runId, lease, Date.now());
          return undefined;
        }
        this.watch(lease, leaseDeadline);
        if (signal.aborted) {
          // The poll went away: the task goes straight back, the attempt unused.
          await engine.steps.release(runId, lease, Date.now());
          await job.moveToWait(token).catch(() => {});
          return undefined;
        }
        if (req.handlers.length > 0 && !req.handlers.includes(task.handler)) {
          const failure = {
            type: "UnknownHandler",
            message: `worker "${req.workerId}" polling queue "${req.queue}" has no handler "${task.handler}" (it has: ${req.handlers.join(", ")})`,
            details: "",
          };
          await this.recordFailure({ lease, loaded, task }, failure, false, "ignore");
          return undefined;
        }
        engine.logger.debug(
          { runId, taskId, attempt: lease.attempt, queue: req.queue, workerId: req.workerId },
          "task leased",
        );
        const inputs =
          outcome === "big"
            ? budget.tooLarge(loaded.compiled, task, Number(reply[4]), Number(reply[5]))
            : budget.admit(loaded.compiled, task, String(reply[2] ?? ""), reply.slice(4).map(String));
        if (inputs.kind === "too-large") {
          // Undeliverable within the answer limit, on any attempt: fails for good, to no worker.
          await this.recordFailure({ lease, loaded, task }, inputs.failure, false, "ignore");
          return undefined;
        }
        if (inputs.kind === "full") {
          await engine.steps.release(runId, lease, Date.now());
          await job.moveToWait(token).catch(() => {});
          return undefined;
        }
        return create(TaskAssignmentSchema, {
          leaseId: formatLeaseId(lease),
          runId,
          taskId,
          workflow: loaded.workflow.name,
          workflowVersion: loaded.workflow.version,
          handler: task.handler,
          queue: task.queue,
          attempt: lease.attempt,
          maxAttempts: task.retry.maxAttempts,
          input: task.input === undefined ? undefined : jsonValue(JSON.stringify(task.input)),
          runInput: inputs.runInput,
          parentOutputs: inputs.parentOutputs,
          heartbeatTimeout: durationOf(task.heartbeatTimeoutMs),
          leaseDeadline: timestampFromMs(leaseDeadline),
          attemptDeadline: task.startToCloseMs > 0 ? timestampFromMs(now + task.startToCloseMs) : undefined,
        });
      }
      if (outcome === "lost") {
        // Delivered again while recorded as running: the previous lease was lost.
        const lost = { runId, taskId, attempt: Number(reply[1]), nonce: String(reply[2]), owner: "*" };
        await this.expire({ lease: lost, loaded, task }, Number(reply[3]));
        continue;
      }
      if (outcome === "delay") {
        await job.moveToDelayed(Number(reply[1]), token).catch((err) => {
          logThrottle(engine.logger).warn({ err, runId, taskId }, "could not delay job");
        });
        return undefined;
      }
      if (outcome === "done") {
        // Completed before, but its job survived a crash: finish what the step left.
        await this.repairCompleted(runId, loaded, task);
      }
      await job.moveToCompleted(null, token, false).catch(() => {});
      return undefined;
    }
    return undefined;
  }

  /** Extends a lease; reports whether the run was cancelled. */
  async heartbeat(leaseId: string, progress: JsonValue | undefined, principal?: Principal) {
    const { lease, loaded, task } = await this.resolve(leaseId, principal);
    const progressText = progress === undefined ? "" : this.payload(progress, "progress");
    const now = Date.now();
    const reply = await this.engine.steps.heartbeat(
      lease.runId,
      lease,
      now,
      task.heartbeatTimeoutMs,
      progressText,
    );
    const outcome = this.checkOutcome(reply, leaseId);
    if (outcome === "cancel") return { cancelRequested: true, leaseDeadline: undefined };
    const spec = this.engine.jobSpec(lease.runId, loaded, task);
    // The lease deadline is capped by the attempt's start-to-close deadline; the lock follows it.
    const leaseDeadline = Number(reply[2]);
    const held = await this.engine.queues.extendLock(
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

  /** Records a task's output and enqueues the tasks it made ready. */
  async complete(
    leaseId: string,
    output: JsonValue | undefined,
    principal?: Principal,
  ): Promise<{ cancelRequested: boolean }> {
    const { engine } = this;
    const leased = await this.resolve(leaseId, principal);
    const outputText = this.payload(output ?? null, "output");
    // With a backlog on the queue, the job's end also fetches the next job for this replica's polls;
    // a poll arriving meanwhile waits for it rather than fetching its own.
    const offer = engine.backloggedDispatcher(leased.task.queue)?.expectOffer();
    try {
      const completed = await this.recordCompletion(leaseId, leased, outputText, offer);
      this.timers.disarm(leaseKey(leased.lease));
      return completed;
    } finally {
      offer?.abandon();
    }
  }

  private async recordCompletion(
    leaseId: string,
    { lease, loaded, task }: Leased,
    outputText: string,
    offer: PendingOffer | undefined,
  ): Promise<{ cancelRequested: boolean }> {
    const { engine } = this;
    const { runId } = lease;
    const reply = await engine.steps.complete(
      runId,
      lease,
      outputText,
      Date.now(),
      engine.options.runRetentionMs,
      task.children,
      loaded.compiled.leaves.length <= SMALL_RUN_LEAVES ? loaded.compiled.leaves : undefined,
    );
    const outcome = this.checkOutcome(reply, leaseId);
    const spec = engine.jobSpec(runId, loaded, task);
    const token = String(reply[1] ?? "");
    if (outcome === "cancel") {
      await engine.queues.complete(spec, token).catch(() => {});
      return { cancelRequested: true };
    }
    // The job's end and the follow-ups of the step are independent: one round trip for both.
    const followUps = async () => {
      await engine.enqueue(runId, loaded, reply.slice(2).map(String));
      if (outcome === "last")
        await engine.steps.finish(runId, Date.now(), engine.options.runRetentionMs, loaded.compiled.leaves);
    };
    const end =
      offer === undefined
        ? engine.queues.complete(spec, token)
        : engine.queues.completeAndFetch(spec, token).then(offer.fetched);
    await Promise.all([
      followUps(),
      end.catch((err) => {
        engine.logger.debug({ err, runId, taskId: task.id }, "job already completed");
      }),
    ]);
    engine.logger.debug({ runId, taskId: task.id, attempt: lease.attempt }, "task completed");
    return { cancelRequested: false };
  }

  /** Records a failed attempt; retried under the task's policy unless not retryable. */
  async fail(leaseId: string, failure: TaskFailure, retryable: boolean, principal?: Principal) {
    const leased = await this.resolve(leaseId, principal);
    if (
      Buffer.byteLength(failure.message) + Buffer.byteLength(failure.details) >
      this.engine.options.maxPayloadBytes
    ) {
      throw new ConnectError(
        `error: message and details exceed the limit of ${this.engine.options.maxPayloadBytes} bytes`,
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
    const { engine } = this;
    const raw = await engine.redis.hget(engine.keys.run(ref.runId).tasks, ref.taskId);
    if (raw === null) return undefined;
    const record = JSON.parse(raw) as TaskRecord;
    if (record.s !== "R" || record.a !== ref.attempt || record.l !== ref.nonce) return undefined;
    if (record.le !== undefined && record.le > Date.now()) return record.le;
    const loaded = await engine.workflowOf(ref.runId);
    const task = loaded?.compiled.byId.get(ref.taskId);
    if (loaded === undefined || task === undefined) return undefined;
    engine.logger.info({ runId: ref.runId, taskId: ref.taskId, attempt: ref.attempt }, "lease expired");
    return this.expire({ lease: { ...ref, owner: "*" }, loaded, task }, record.sc ?? 0, "expired");
  }

  /** Watches a lease until its deadline on this replica (see LeaseTimers). */
  private watch(lease: LeaseRef, deadline: number): void {
    const ref = { runId: lease.runId, taskId: lease.taskId, attempt: lease.attempt, nonce: lease.nonce };
    this.timers.arm(leaseKey(ref), deadline, () => this.leaseDue(ref));
  }

  /** Called when this replica's stalled checker put back a job whose lock expired. */
  onStalled(queue: string, jobId: string): void {
    const ids = parseJobId(jobId);
    if (ids === undefined) return;
    void (async () => {
      const loaded = await this.engine.workflowOf(ids.runId);
      const task = loaded?.compiled.byId.get(ids.taskId);
      const raw = await this.engine.redis.hget(this.engine.keys.run(ids.runId).tasks, ids.taskId);
      if (loaded === undefined || task === undefined || raw === null) return;
      const record = JSON.parse(raw) as TaskRecord;
      if (record.s !== "R" || record.l === undefined) return;
      this.engine.logger.info(
        { runId: ids.runId, taskId: ids.taskId, attempt: record.a, queue },
        "lease expired",
      );
      await this.expire(
        { lease: { ...ids, attempt: record.a, nonce: record.l, owner: "*" }, loaded, task },
        record.sc ?? 0,
      );
    })().catch((err) =>
      logThrottle(this.engine.logger).warn({ err, jobId }, "handling a stalled job failed"),
    );
  }

  private async recordFailure(
    { lease, loaded, task }: Leased,
    failure: TaskFailure,
    retryable: boolean,
    deadline: LeaseDeadline,
  ): Promise<FailureRecorded> {
    const { engine } = this;
    const { runId } = lease;
    const policy = task.retry;
    const retry =
      retryable &&
      !policy.nonRetryableErrorTypes.includes(failure.type) &&
      lease.attempt < policy.maxAttempts;
    const now = Date.now();
    const delayMs = retry
      ? backoffDelayMs(policy, lease.attempt, backoffSeed(runId, task.id, lease.attempt))
      : 0;
    const continueOnFailure = loaded.workflow.definition?.continueOnFailure === true;
    const reply = await engine.steps.fail(
      runId,
      lease,
      failure,
      retry ? "retry" : "final",
      now + delayMs,
      now,
      engine.options.runRetentionMs,
      continueOnFailure,
      deadline,
      !retry && continueOnFailure ? descendantsOf(loaded, task.id) : [],
    );
    if (reply[0] === "alive")
      return { willRetry: false, nextAttemptTime: undefined, aliveUntil: Number(reply[1]) };
    const outcome = this.checkOutcome(reply, formatLeaseId(lease));
    this.timers.disarm(leaseKey(lease));
    const spec = engine.jobSpec(runId, loaded, task);
    const token = String(reply[1] ?? "");
    const log = {
      runId,
      taskId: task.id,
      attempt: lease.attempt,
      queue: task.queue,
      errorType: failure.type,
    };
    if (outcome === "retry") {
      engine.logger.info({ ...log, delayMs }, "task attempt failed; retrying");
      await engine.queues.fail(spec, token, failure.message, true, delayMs).catch((err) => {
        engine.logger.debug({ err, ...log }, "job lock already lost; it will be redelivered");
      });
      return { willRetry: true, nextAttemptTime: timestampFromMs(now + delayMs) };
    }
    if (outcome === "failed") {
      engine.logger.info(log, "task failed");
      if (token === "") await engine.queues.remove(task.queue, jobIdOf(runId, task.id)).catch(() => {});
      else await engine.queues.fail(spec, token, failure.message, false, 0).catch(() => {});
      await engine.dropJobs(runId, loaded, reply.slice(2));
    } else if (outcome === "cancel") {
      await engine.queues.complete(spec, token).catch(() => {});
    }
    return { willRetry: false, nextAttemptTime: undefined };
  }

  /** Fails a task no worker started within its schedule-to-start timeout (final). */
  async scheduleToStartExpired(runId: string, loaded: LoadedWorkflow, task: CompiledTask): Promise<void> {
    const failure = {
      type: "ScheduleToStartTimeout",
      message: `no worker started the task within its schedule-to-start timeout of ${task.scheduleToStartMs} ms`,
      details: "",
    };
    try {
      await this.recordFailure(
        { lease: { runId, taskId: task.id, attempt: 0, nonce: "*" }, loaded, task },
        failure,
        false,
        "ignore",
      );
    } catch (err) {
      if (!(err instanceof ConnectError)) throw err;
    }
  }

  /**
   * Takes a slot under the task's rate-limit key and returns its time.
   * Over the limit, the task waits in BullMQ's delayed set until the window
   * has room (no attempt used, nothing polls) and its run shows why; returns
   * undefined then. Tasks of other keys are not held back.
   */
  private async underKeyLimit(
    runId: string,
    task: CompiledTask,
    job: FetchedJob["job"],
    token: string,
  ): Promise<number | undefined> {
    const { engine } = this;
    let key = task.rateLimitKey;
    if (KeyLimiter.needsInput(key)) {
      const input = await engine.redis.hget(engine.keys.run(runId).run, "in");
      key = KeyLimiter.render(key, input === null ? null : (JSON.parse(input) as JsonValue));
    }
    const limit = engine.limiter.limitOf(key);
    if (limit === undefined) return Date.now();
    const slot = await engine.limiter.acquire(key, limit, `${job.id}.${newLeaseNonce()}`);
    if (slot.waitMs === 0) return slot.at;
    const reason = `rate limit key "${key}" allows ${limit.max} per ${limit.perMs} ms`;
    await engine.steps.wait(runId, task.id, reason, Date.now());
    await job.moveToDelayed(Date.now() + slot.waitMs, token).catch((err) => {
      logThrottle(engine.logger).warn({ err, runId, taskId: task.id }, "could not delay a rate-limited job");
    });
    return undefined;
  }

  private async repairCompleted(runId: string, loaded: LoadedWorkflow, task: CompiledTask): Promise<void> {
    const { engine } = this;
    const k = engine.keys.run(runId);
    if (task.children.length > 0) {
      const records = await engine.redis.hmget(k.tasks, ...task.children);
      const queued = task.children.filter((_, i) => {
        const raw = records[i];
        return raw !== null && raw !== undefined && (JSON.parse(raw) as TaskRecord).s === "Q";
      });
      await engine.enqueue(runId, loaded, queued);
    }
    const [status, remaining] = await engine.redis.hmget(k.run, "s", "rem");
    if (status === "R" && remaining === "0") {
      await engine.steps.finish(runId, Date.now(), engine.options.runRetentionMs, loaded.compiled.leaves);
    }
  }

  /** Parses a lease id and finds its task; the caller must be allowed on the task's queue. */
  private async resolve(leaseId: string, principal: Principal | undefined): Promise<Leased> {
    if (leaseId === "") throw invalidArgument([{ field: "lease_id", description: "is required" }]);
    const lease = parseLeaseId(leaseId);
    if (lease === undefined) {
      throw invalidArgument([{ field: "lease_id", description: "is not a lease id issued by PollTask" }]);
    }
    const loaded = await this.engine.workflowOf(lease.runId);
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
    const size = payloadBytes(text, this.engine.options.maxPayloadBytes, value);
    if (size > this.engine.options.maxPayloadBytes) {
      throw new ConnectError(
        `${field}: ${size} bytes exceeds the limit of ${this.engine.options.maxPayloadBytes} bytes`,
        Code.ResourceExhausted,
      );
    }
    return text;
  }
}

function durationOf(ms: number) {
  return create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
}

/** Every task reachable from a task through its children. */
function descendantsOf(loaded: LoadedWorkflow, taskId: string): string[] {
  const seen = new Set<string>();
  const stack = [...(loaded.compiled.byId.get(taskId)?.children ?? [])];
  while (stack.length > 0) {
    const id = stack.pop() as string;
    if (seen.has(id)) continue;
    seen.add(id);
    for (const child of loaded.compiled.byId.get(id)?.children ?? []) stack.push(child);
  }
  return [...seen];
}
