import { Code, ConnectError } from "@connectrpc/connect";
import type { Run } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { Logger } from "pino";
import { logThrottle } from "../../observability/log-throttle.js";
import type { RedisClient } from "../../redis/redis.js";
import { isRedisUnavailableError } from "../../redis/redis.js";
import type { LoadedWorkflow } from "../definitions/index.js";
import type { TimerData, Timers } from "../dispatch/index.js";
import {
  checkRunId,
  notFound,
  type RunJobs,
  type RunReads,
  type RunSteps,
  type RunWorkflows,
} from "../runs/index.js";
import { invalidArgument, type Keys } from "../shared/index.js";
import type { DeadLetterIndex, EntryPlace, StoredEntry } from "./dead-letter-index.js";
import { planResume } from "./resume-plan.js";

/** What ResumeRun asks for. */
export interface ResumeRequest {
  /** Also run again this task and its descendants. */
  fromTask?: string;
  /** Resumes with one key resume a run once. */
  idempotencyKey?: string;
  /** Recorded in the RUN_RESUMED event. */
  reason?: string;
  /** The finish to resume (the run's resume count then); undefined: the current one. */
  resumeCount?: number;
}

/** What a resume did. */
export interface ResumeResult {
  run: Run;
  /** False when that finish had already been resumed. */
  resumed: boolean;
  /** Tasks queued at once. */
  queued: string[];
  /** Tasks that run again. */
  reset: number;
}

/** What resuming runs works with. */
export interface ResumeDeps {
  redis: RedisClient;
  keys: Keys;
  logger: Logger;
  runWorkflows: RunWorkflows;
  steps: RunSteps;
  jobs: RunJobs;
  timers: Timers;
  reads: RunReads;
  index: DeadLetterIndex;
  limits: { runRetentionMs: number };
}

/**
 * A resume that names neither the finish it resumes nor an idempotency key, within this long of the
 * run's last resume, is taken as racing that resume (two operators pressing at once): it answers
 * resumed = false instead of resuming again or finding the run running.
 */
export const RESUME_RACE_MS = 10_000;

/** Task records read per round trip when planning. */
const RECORDS_PAGE = 1000;

/**
 * Resuming finished runs (ResumeRun, and dead letters' retries): the run's records are read and the
 * resume planned here, then one RESUME step (see resume-script.ts) carries it out atomically if the
 * run is still in the finish that was read; the tasks it queued are enqueued after it, and the
 * reconciler enqueues them should a crash come in between.
 */
export class ResumeOps {
  /** Resumes this replica made (for /metrics). */
  resumed = 0;

  constructor(private readonly deps: ResumeDeps) {}

  async resume(runId: string, req: ResumeRequest = {}): Promise<ResumeResult> {
    const { deps } = this;
    checkRunId(runId);
    const fromTask = req.fromTask ?? "";
    const key = req.idempotencyKey ?? "";
    const loaded = await deps.runWorkflows.of(runId);
    if (loaded === undefined) throw notFound(runId);
    if (fromTask !== "" && loaded.compiled.byId.get(fromTask) === undefined) {
      throw invalidArgument([
        {
          field: "from_task",
          description: `"${fromTask}" is not a task of workflow "${loaded.workflow.name}" version ${loaded.workflow.version}`,
        },
      ]);
    }
    const k = deps.keys.run(runId);
    // The tasks' records are read with the run's head (in one write): a finished run's records do not
    // change, and the step checks that the run is still in the finish read here.
    const [[status, genText, resumedAt, done], statuses] = await Promise.all([
      deps.redis.hmget(k.run, "s", "gen", "rt", key === "" ? "s" : `ri:${key}`),
      this.statuses(runId, loaded),
    ]);
    if (status === null || status === undefined) throw notFound(runId);
    const gen = Number(genText ?? 0);
    if (key !== "" && done !== null) return this.unchanged(runId);
    const named = key !== "" || req.resumeCount !== undefined;
    if (!named && resumedAt !== null && Date.now() - Number(resumedAt) < RESUME_RACE_MS)
      return this.unchanged(runId);
    if (req.resumeCount !== undefined && req.resumeCount !== gen) {
      if (req.resumeCount < gen) return this.unchanged(runId);
      throw new ConnectError(
        `resume_count: run "${runId}" has been resumed ${gen} times; it has no finish ${req.resumeCount} to resume`,
        Code.FailedPrecondition,
      );
    }
    if (status === "R") {
      throw new ConnectError(
        `run "${runId}" is running: only a run that ended FAILED, CANCELLED or TIMED_OUT can be resumed`,
        Code.FailedPrecondition,
      );
    }
    if (status === "S") {
      throw new ConnectError(`run "${runId}" succeeded: there is nothing to resume`, Code.FailedPrecondition);
    }
    const plan = planResume(loaded.compiled, (i) => statuses[i] ?? "P", fromTask);
    const reason = req.reason ?? "";
    const message =
      reason !== "" ? reason : fromTask !== "" ? `resumed from task "${fromTask}"` : "resumed by request";
    const reply = await deps.steps.resume(runId, gen, key, Date.now(), message, plan.tasks);
    const outcome = String(reply[0]);
    if (outcome === "notfound") throw notFound(runId);
    if (outcome === "dup" || outcome === "raced") return this.unchanged(runId);
    if (outcome !== "resumed") {
      throw new ConnectError(
        `run "${runId}" is no longer finished: it was resumed meanwhile`,
        Code.FailedPrecondition,
      );
    }
    const queuedCount = Number(reply[2]);
    const queued = reply.slice(3, 3 + queuedCount).map(String);
    const entries = reply.slice(3 + queuedCount).map((e) => entryPlace(runId, loaded, String(e)));
    this.resumed++;
    deps.runWorkflows.remember(runId, loaded.workflow.name, loaded.workflow.version);
    deps.logger.info(
      { runId, resumeCount: Number(reply[1]), reset: plan.tasks.length, queued: queued.length, fromTask },
      "run resumed",
    );
    // The follow-ups, the index updates and the answer's read go together.
    const summary = this.summary(runId);
    summary.catch(() => {});
    try {
      await Promise.all([
        this.followUp(runId, loaded, plan.recorded, queued, plan.tasks.length),
        deps.index.remove(entries),
      ]);
    } catch (err) {
      // The run is resumed: failing the call now would have its caller resume it again. The
      // reconciler queues what is missing once Redis answers (--reconcile-after).
      if (!isRedisUnavailableError(err)) throw err;
      logThrottle(deps.logger).warn({ err, runId }, "run resumed, its tasks to be queued once Redis answers");
    }
    return { run: await summary, resumed: true, queued, reset: plan.tasks.length };
  }

  /** What a resume leaves to do after its step: old jobs and timers out, new ones in. */
  private async followUp(
    runId: string,
    loaded: LoadedWorkflow,
    recorded: readonly string[],
    queued: readonly string[],
    reset: number,
  ): Promise<void> {
    const { deps } = this;
    const { compiled } = loaded;
    const stale: TimerData[] = [];
    for (const id of recorded) {
      if ((compiled.byId.get(id)?.scheduleToStartMs ?? 0) > 0)
        stale.push({ kind: "schedule-to-start", runId, taskId: id });
    }
    if (compiled.runTimeoutMs > 0) stale.push({ kind: "run-timeout", runId });
    const locked = await deps.jobs.removeJobs(runId, loaded, recorded);
    if (locked > 0) deps.logger.debug({ runId, locked }, "resume: jobs locked by an earlier round stay");
    await deps.timers.remove(stale);
    await deps.jobs.enqueue(runId, loaded, queued);
    if (compiled.runTimeoutMs > 0) {
      await deps.timers.schedule([{ data: { kind: "run-timeout", runId }, delayMs: compiled.runTimeoutMs }]);
    }
    // A run with no task to run again (a cancelled run whose tasks had all succeeded) ends now.
    if (reset === 0) {
      await deps.steps.finish(runId, Date.now(), deps.limits.runRetentionMs, compiled.leaves);
    }
  }

  /**
   * The tasks' statuses in definition order, one letter each: "P" for no record, "k" for a task
   * skipped before it was ever queued (it never had a job to remove).
   */
  private async statuses(runId: string, loaded: LoadedWorkflow): Promise<string[]> {
    const { compiled } = loaded;
    const tasksKey = this.deps.keys.run(runId).tasks;
    const out: string[] = [];
    for (let i = 0; i < compiled.size; i += RECORDS_PAGE) {
      const ids: string[] = [];
      for (let j = i; j < Math.min(compiled.size, i + RECORDS_PAGE); j++) ids.push(compiled.idAt(j));
      const records = await this.deps.redis.hmget(tasksKey, ...ids);
      for (const raw of records) {
        if (raw === null) out.push("P");
        else {
          const r = JSON.parse(raw) as { s: string; qt?: number };
          out.push(r.s === "K" && r.qt === undefined ? "k" : r.s);
        }
      }
    }
    return out;
  }

  private async unchanged(runId: string): Promise<ResumeResult> {
    return { run: await this.summary(runId), resumed: false, queued: [], reset: 0 };
  }

  private async summary(runId: string): Promise<Run> {
    return (await this.deps.reads.summaries([runId]))[0] as Run;
  }
}

/** Where a dead-letter entry a resume removed was listed ("taskId|entry JSON"). */
function entryPlace(runId: string, loaded: LoadedWorkflow, text: string): EntryPlace {
  const bar = text.indexOf("|");
  const stored = JSON.parse(text.slice(bar + 1)) as StoredEntry;
  return {
    runId,
    taskId: text.slice(0, bar),
    queue: stored.q,
    workflow: loaded.workflow.name,
    errorType: stored.et,
  };
}
