import { create } from "@bufbuild/protobuf";
import { EventType, type Run, type RunEvent, RunStatus, type TaskRun, TaskStatus } from "@weft/sdk";
import { TaskRunSchema } from "@weft/sdk/gen/weft/v1/run_pb.js";

/** Task statuses after which a task does nothing more. */
export const FINAL_TASK_STATUSES = new Set([
  TaskStatus.SUCCEEDED,
  TaskStatus.FAILED,
  TaskStatus.CANCELLED,
  TaskStatus.SKIPPED,
]);

/**
 * A run kept up to date from its events, for the live view: starts from GetRun and applies each
 * later event to the run and its task runs.
 */
export class RunState {
  readonly run: Run;
  /** Set while the watch is reconnecting, for the view to say so. */
  reconnecting: string | undefined;

  constructor(run: Run) {
    this.run = run;
  }

  /** The task run of `taskId`, added if the snapshot did not have it. */
  task(taskId: string): TaskRun {
    let t = this.run.tasks.find((x) => x.taskId === taskId);
    if (t === undefined) {
      t = create(TaskRunSchema, { taskId, status: TaskStatus.PENDING });
      this.run.tasks.push(t);
    }
    return t;
  }

  /** Whether the run reached a final status. */
  get finished(): boolean {
    return this.run.status !== RunStatus.RUNNING && this.run.status !== RunStatus.UNSPECIFIED;
  }

  /** Tasks done (in a final status) and in all. */
  progress(): { done: number; total: number } {
    const total = this.run.tasks.length;
    return { done: this.run.tasks.filter((t) => FINAL_TASK_STATUSES.has(t.status)).length, total };
  }

  /** Applies one event. */
  apply(e: RunEvent): void {
    this.reconnecting = undefined;
    this.run.lastSequence = e.sequence;
    if (e.runStatus !== RunStatus.UNSPECIFIED) this.run.status = e.runStatus;
    if (e.type === EventType.RUN_RESUMED) {
      // The tasks that did not succeed run again; their TASK_QUEUED events come as they are queued.
      this.run.finishTime = undefined;
      this.run.error = "";
      for (const t of this.run.tasks) {
        if (t.status === TaskStatus.SUCCEEDED || t.status === TaskStatus.PENDING) continue;
        t.status = TaskStatus.PENDING;
        t.attempt = 0;
        t.error = undefined;
        t.startTime = undefined;
        t.finishTime = undefined;
      }
      return;
    }
    if (e.type === EventType.RUN_FINISHED) {
      this.run.finishTime = e.time;
      if (e.output !== undefined) this.run.output = e.output;
      if (e.message !== "") this.run.error = e.message;
      return;
    }
    if (e.taskId === "") return;
    const t = this.task(e.taskId);
    if (e.attempt !== 0) t.attempt = e.attempt;
    switch (e.type) {
      case EventType.TASK_QUEUED:
        t.status = TaskStatus.QUEUED;
        t.attempt = e.attempt;
        t.queueTime = e.time;
        t.waitingReason = "";
        break;
      case EventType.TASK_WAITING:
        t.waitingReason = e.message;
        break;
      case EventType.TASK_STARTED:
        t.status = TaskStatus.RUNNING;
        t.startTime = e.time;
        t.finishTime = undefined;
        t.workerId = e.workerId;
        t.waitingReason = "";
        break;
      case EventType.TASK_RETRYING:
        t.status = TaskStatus.RETRYING;
        t.finishTime = e.time;
        t.error = e.error;
        t.nextAttemptTime = e.nextAttemptTime;
        break;
      case EventType.TASK_COMPLETED:
        t.status = TaskStatus.SUCCEEDED;
        t.finishTime = e.time;
        t.output = e.output;
        break;
      case EventType.TASK_FAILED:
        t.status = TaskStatus.FAILED;
        t.finishTime = e.time;
        t.error = e.error;
        break;
      case EventType.TASK_CANCELLED:
        t.status = TaskStatus.CANCELLED;
        t.finishTime = e.time;
        break;
      case EventType.TASK_SKIPPED:
        t.status = TaskStatus.SKIPPED;
        break;
    }
  }
}
