import { create, type JsonValue } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type TaskAssignment, TaskAssignmentSchema } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { logThrottle } from "../../observability/log-throttle.js";
import type { CompiledTask, LoadedWorkflow } from "../definitions/index.js";
import { type FetchedJob, KeyLimiter, LOCK_GRACE_MS } from "../dispatch/index.js";
import { jobSpec, jsonValue, type LeaseArgs, type TaskRecord } from "../runs/index.js";
import { formatLeaseId, type LeaseRef, newLeaseNonce, parseJobId } from "../shared/index.js";
import { AssignmentBudget } from "./assignment-budget.js";
import type { LeaseDeps, LeaseEnds } from "./leased.js";

/** How long a job held by a handler's circuit opened by hand (with no end) waits before it looks again. */
const CIRCUIT_RECHECK_MS = 30_000;

/** The reason a poll's wait ends (made once: an abort without a reason allocates a DOMException). */
const WAIT_OVER = new Error("poll wait over");

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

/**
 * Handing tasks to polls: a fetched job's task starts under a new lease (the START step), within
 * the queue's and the task's rate limits and the poll's answer budget, and becomes an assignment.
 */
export class TaskHandout {
  constructor(
    private readonly deps: LeaseDeps,
    private readonly ends: LeaseEnds,
  ) {}

  /**
   * Waits up to `waitMs` for a task of the queue, then adds up to
   * `maxTasks - 1` tasks already queued; empty when none came, the call went
   * away (`signal`) or the daemon began shutting down (`shutdown`).
   */
  async poll(req: PollRequest, signal: AbortSignal, shutdown?: AbortSignal): Promise<TaskAssignment[]> {
    const waitMs = Math.min(req.waitMs, this.deps.limits.pollWaitCapMs);
    // One controller and one timer per poll: ends the wait at its deadline or when the call goes away.
    const wait = new AbortController();
    const stop = () => wait.abort(WAIT_OVER);
    const timer = setTimeout(stop, Math.max(waitMs, 1));
    signal.addEventListener("abort", stop, { once: true });
    shutdown?.addEventListener("abort", stop, { once: true });
    if (shutdown?.aborted) stop();
    try {
      const dispatcher = this.deps.dispatchers.get(req.queue);
      const max = Math.max(1, req.maxTasks ?? 1);
      while (!wait.signal.aborted && req.peer?.suspect !== true) {
        // Each fetched job is handed over at once, while the next ones are still being fetched.
        const handing: Promise<TaskAssignment | undefined>[] = [];
        // The assignments of one answer stay within the answer limit together.
        const budget = new AssignmentBudget(this.deps.limits.maxResponseBytes);
        const hand = (jobs: FetchedJob[]) => {
          for (const fetched of jobs) {
            const handOver = this.handOver(fetched, req, signal, budget);
            // Settled below; one that fails (Redis went away) while more jobs are fetched is no
            // unhandled rejection meanwhile.
            handOver.catch(() => {});
            handing.push(handOver);
          }
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
      this.deps.dispatchers.get(req.queue).putBack(fetched);
      throw err;
    }
  }

  private async startTask(
    { job, token }: FetchedJob,
    req: PollRequest,
    signal: AbortSignal,
    budget: AssignmentBudget,
  ): Promise<TaskAssignment | undefined> {
    const { deps } = this;
    const ids = parseJobId(job.id ?? "");
    const loaded =
      ids === undefined
        ? undefined
        : await deps.workflows.get(job.data.w, job.data.v).catch((err: unknown) => {
            // Only a workflow that is not there makes the job foreign; Redis errors go up.
            if (err instanceof ConnectError && err.code === Code.NotFound) return undefined;
            throw err;
          });
    const task = ids === undefined ? undefined : loaded?.compiled.byId.get(ids.taskId);
    if (ids === undefined || loaded === undefined || task === undefined) {
      logThrottle(deps.logger).warn(
        { jobId: job.id, queue: req.queue },
        "dropping a job that is not a Weft task",
      );
      await job.moveToCompleted(null, token, false).catch(() => {});
      return undefined;
    }
    const { runId, taskId } = ids;
    const spec = jobSpec(runId, loaded, task);
    // A poll whose client went away, or whose connection has gone quiet and does not answer a
    // PING (a cut link, a frozen host), gets no task: it goes back at once for a live poll.
    if (signal.aborted || (req.peer !== undefined && !(await req.peer.usable()))) {
      await job.moveToWait(token).catch(() => {});
      return undefined;
    }
    // An open circuit breaker holds the task back (no attempt used) before it takes any rate-limit slot.
    if (!(await this.circuitAdmits(runId, loaded, task, job, token))) return undefined;
    // Rate limits: the queue's, then the task's key. The slot's time is the attempt's start time.
    let startedAt: number | undefined;
    const queueLimit = await deps.admin.rateLimitOf(task.queue);
    if (queueLimit !== undefined) {
      const slot = await deps.limiter.acquireQueue(task.queue, queueLimit, `${job.id}.${newLeaseNonce()}`);
      if (slot.waitMs > 0) {
        deps.dispatchers.get(task.queue).holdFor(slot.waitMs);
        await job.moveToWait(token).catch(() => {});
        return undefined;
      }
      startedAt = slot.at;
    }
    if (task.rateLimitKey !== "" && deps.limiter.active) {
      const at = await this.underKeyLimit(runId, task, job, token);
      if (at === undefined) return undefined;
      startedAt ??= at;
    }
    // The job came under a short lock (a replica that dies before it starts the task strands it
    // for that long, not for a lease); the lease's lock outlives the lease by a grace period. Sent
    // with the step that starts the task, not after it.
    const locking = deps.queues.extendLock(spec, token, task.heartbeatTimeoutMs + LOCK_GRACE_MS);
    locking.catch(() => {});
    for (let round = 0; round < 3; round++) {
      const nonce = newLeaseNonce();
      const now = round === 0 && startedAt !== undefined ? startedAt : Date.now();
      const reply = await deps.steps.start(
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
        deps.runWorkflows.remember(runId, loaded.workflow.name, loaded.workflow.version);
        if (!(await locking)) {
          // The short lock ran out first (a very slow moment): the job went back to its queue and
          // is another poll's now. The attempt goes back unused.
          await deps.steps.release(runId, lease, Date.now());
          return undefined;
        }
        this.ends.watch(lease, leaseDeadline);
        if (signal.aborted) {
          // The poll went away: the task goes straight back, the attempt unused.
          await deps.steps.release(runId, lease, Date.now());
          await job.moveToWait(token).catch(() => {});
          return undefined;
        }
        if (req.handlers.length > 0 && !req.handlers.includes(task.handler)) {
          const failure = {
            type: "UnknownHandler",
            message: `worker "${req.workerId}" polling queue "${req.queue}" has no handler "${task.handler}" (it has: ${req.handlers.join(", ")})`,
            details: "",
          };
          await this.ends.recordFailure({ lease, loaded, task }, failure, false, "ignore");
          return undefined;
        }
        deps.logger.debug(
          { runId, taskId, attempt: lease.attempt, queue: req.queue, workerId: req.workerId },
          "task leased",
        );
        const inputs =
          outcome === "big"
            ? budget.tooLarge(loaded.compiled, task, Number(reply[4]), Number(reply[5]))
            : budget.admit(loaded.compiled, task, String(reply[2] ?? ""), reply.slice(4).map(String));
        if (inputs.kind === "too-large") {
          // Undeliverable within the answer limit, on any attempt: fails for good, to no worker.
          await this.ends.recordFailure({ lease, loaded, task }, inputs.failure, false, "ignore");
          return undefined;
        }
        if (inputs.kind === "full") {
          await deps.steps.release(runId, lease, Date.now());
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
        await this.ends.expire({ lease: lost, loaded, task }, Number(reply[3]));
        continue;
      }
      if (outcome === "delay") {
        await job.moveToDelayed(Number(reply[1]), token).catch((err) => {
          logThrottle(deps.logger).warn({ err, runId, taskId }, "could not delay job");
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
    const { deps } = this;
    let key = task.rateLimitKey;
    if (KeyLimiter.needsInput(key)) {
      const input = await deps.redis.hget(deps.keys.run(runId).run, "in");
      key = KeyLimiter.render(key, input === null ? null : (JSON.parse(input) as JsonValue));
    }
    const limit = deps.limiter.limitOf(key);
    if (limit === undefined) return Date.now();
    const slot = await deps.limiter.acquire(key, limit, `${job.id}.${newLeaseNonce()}`);
    if (slot.waitMs === 0) return slot.at;
    const reason = `rate limit key "${key}" allows ${limit.max} per ${limit.perMs} ms`;
    await deps.steps.wait(runId, task.id, reason, Date.now());
    await job.moveToDelayed(Date.now() + slot.waitMs, token).catch((err) => {
      logThrottle(deps.logger).warn({ err, runId, taskId: task.id }, "could not delay a rate-limited job");
    });
    return undefined;
  }

  /**
   * Whether the task's circuit breaker lets it start (a half-open one takes it as a probe). If not,
   * its run shows why (TASK_WAITING) and the job goes back: held by the whole queue's circuit, to
   * the queue's wait list while this replica's dispatcher pauses (a second at most, then it looks
   * again); held by its handler's, to the delayed set until the circuit may let a probe through
   * (a circuit that closes brings the queue's delayed jobs back at once).
   */
  private async circuitAdmits(
    runId: string,
    loaded: LoadedWorkflow,
    task: CompiledTask,
    job: FetchedJob["job"],
    token: string,
  ): Promise<boolean> {
    const { deps } = this;
    const verdict = await deps.circuits.admit(task, loaded, job.id ?? "");
    if (!verdict.held) return true;
    const now = Date.now();
    await deps.steps.wait(runId, task.id, verdict.reason, now);
    if (verdict.queueWide) {
      deps.dispatchers
        .get(task.queue)
        .holdFor(Math.max(1, Math.min((verdict.until ?? now + 1000) - now, 1000)));
      await job.moveToWait(token).catch(() => {});
    } else {
      const until = Math.max(verdict.until ?? now + CIRCUIT_RECHECK_MS, now + 1);
      await job.moveToDelayed(until, token).catch((err) => {
        logThrottle(deps.logger).warn(
          { err, runId, taskId: task.id },
          "could not delay a job its circuit holds",
        );
      });
    }
    return false;
  }

  private async repairCompleted(runId: string, loaded: LoadedWorkflow, task: CompiledTask): Promise<void> {
    const { deps } = this;
    const k = deps.keys.run(runId);
    if (task.children.length > 0) {
      const records = await deps.redis.hmget(k.tasks, ...task.children);
      const queued = task.children.filter((_, i) => {
        const raw = records[i];
        return raw !== null && raw !== undefined && (JSON.parse(raw) as TaskRecord).s === "Q";
      });
      await deps.jobs.enqueue(runId, loaded, queued);
    }
    const [status, remaining] = await deps.redis.hmget(k.run, "s", "rem");
    if (status === "R" && remaining === "0") {
      await deps.steps.finish(runId, Date.now(), deps.limits.runRetentionMs, loaded.compiled.leaves);
    }
  }
}

function durationOf(ms: number) {
  return create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
}
