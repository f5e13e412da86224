import type { Logger } from "pino";
import type { CompiledTask, LoadedWorkflow } from "../definitions/index.js";
import type { QueueAdmin, TaskJobSpec, TaskQueues, TimerData, Timers } from "../dispatch/index.js";
import { jobIdOf } from "../shared/index.js";

/**
 * Most jobs enqueued in one BullMQ call. A step that makes many tasks ready
 * (a trigger or a fan-out) adds them in chunks, one after the other: BullMQ
 * builds several KiB of objects per job it adds, and the first tasks start
 * while the later chunks are still being added.
 */
export const ENQUEUE_CHUNK = 1000;

/** The tasks of one run to enqueue. */
export interface RunTasks {
  runId: string;
  loaded: LoadedWorkflow;
  taskIds: readonly string[];
}

/** The job of a task. */
export function jobSpec(
  runId: string,
  loaded: LoadedWorkflow,
  task: CompiledTask,
  delayMs?: number,
): TaskJobSpec {
  return {
    runId,
    taskId: task.id,
    workflow: loaded.workflow.name,
    version: loaded.workflow.version,
    queue: task.queue,
    handler: task.handler,
    maxAttempts: task.retry.maxAttempts,
    delayMs,
  };
}

/**
 * The BullMQ jobs of runs' tasks: enqueueing the tasks a run step made ready (with their
 * schedule-to-start timers), and dropping the jobs a step released.
 */
export class RunJobs {
  /** Task queues this replica has remembered for ListQueues. */
  private readonly knownQueues = new Set<string>();

  constructor(
    private readonly queues: TaskQueues,
    private readonly timers: Timers,
    private readonly admin: QueueAdmin,
    private readonly logger: Logger,
  ) {}

  /**
   * Enqueues the jobs of tasks made ready by a step, with their schedule-to-start
   * timers, in chunks of {@link ENQUEUE_CHUNK} in the order given.
   */
  async enqueue(runId: string, loaded: LoadedWorkflow, taskIds: readonly string[]): Promise<void> {
    await this.enqueueAll([{ runId, loaded, taskIds }]);
  }

  /** Queues the tasks of several runs, in chunks of jobs added with one BullMQ call per queue. */
  async enqueueAll(runs: readonly RunTasks[]): Promise<void> {
    let specs: TaskJobSpec[] = [];
    let timers: { data: TimerData; delayMs: number }[] = [];
    const flush = async () => {
      await Promise.all([this.queues.add(specs), this.timers.schedule(timers)]);
      specs = [];
      timers = [];
    };
    for (const { runId, loaded, taskIds } of runs) {
      for (const id of taskIds) {
        const task = loaded.compiled.byId.get(id);
        if (task === undefined) continue;
        specs.push(jobSpec(runId, loaded, task));
        if (task.scheduleToStartMs > 0) {
          timers.push({
            data: { kind: "schedule-to-start", runId, taskId: id },
            delayMs: task.scheduleToStartMs,
          });
        }
        if (!this.knownQueues.has(task.queue)) {
          this.knownQueues.add(task.queue);
          await this.admin.remember(task.queue);
        }
        if (specs.length === ENQUEUE_CHUNK) await flush();
      }
    }
    if (specs.length > 0) await flush();
  }

  /**
   * Removes the jobs an earlier round of a run left for tasks a resume runs again (completed or
   * failed jobs keep their deterministic ids for a while, and a job id in use is never added
   * again). A job locked at that moment stays: it is in a hand-over that the task's record now
   * decides, and the reconciler replaces it should it end without starting the task. Returns how
   * many could not be removed.
   */
  async removeJobs(runId: string, loaded: LoadedWorkflow, taskIds: readonly string[]): Promise<number> {
    let locked = 0;
    for (let i = 0; i < taskIds.length; i += ENQUEUE_CHUNK) {
      const removed = await Promise.all(
        taskIds.slice(i, i + ENQUEUE_CHUNK).map(async (id) => {
          const task = loaded.compiled.byId.get(id);
          if (task === undefined) return 1;
          return this.queues.remove(task.queue, jobIdOf(runId, id)).then(
            (removed) => (removed ? 1 : 0),
            () => 0,
          );
        }),
      );
      for (const r of removed) locked += 1 - r;
    }
    return locked;
  }

  /**
   * Drops the BullMQ jobs a run step released ("taskId|token" entries: a
   * token means the job is locked by a lease, none that it waits or is
   * delayed). Failures are logged: a job that is already gone needs nothing.
   */
  async drop(runId: string, loaded: LoadedWorkflow, entries: (string | number)[]): Promise<void> {
    await Promise.all(
      entries.map(async (entry) => {
        const [taskId = "", token = ""] = String(entry).split("|");
        const task = loaded.compiled.byId.get(taskId);
        if (task === undefined) return;
        const spec = jobSpec(runId, loaded, task);
        try {
          if (token !== "") await this.queues.complete(spec, token);
          else await this.queues.remove(task.queue, jobIdOf(runId, taskId));
        } catch (err) {
          this.logger.debug({ err, runId, taskId }, "job already gone");
        }
      }),
    );
  }
}
