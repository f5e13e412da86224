import type { LoadedWorkflow } from "../definitions/index.js";
import type { DeadLetterNote } from "../runs/index.js";
import type { LeaseDeps, Leased, TaskFailure } from "./leased.js";

/** How much of an attempt's error message and details its history keeps (the last error stays whole on the task). */
const HISTORY_TEXT = 8192;

/** An error text as an attempt's history keeps it. */
function cut(text: string): string {
  return text.length <= HISTORY_TEXT ? text : `${text.slice(0, HISTORY_TEXT)}…`;
}

/**
 * What the FAIL step records beside a failed attempt: its error for the attempt's history, and for a
 * final failure the task's dead-letter entry, whose index writes go first, in the same write.
 */
export function failureNote(
  deps: LeaseDeps,
  { lease, loaded, task }: Leased,
  failure: TaskFailure,
  retry: boolean,
  now: number,
): DeadLetterNote {
  const place = {
    runId: lease.runId,
    taskId: task.id,
    queue: task.queue,
    workflow: loaded.workflow.name,
    errorType: failure.type,
  };
  return {
    queue: task.queue,
    handler: task.handler,
    historyMessage: cut(failure.message),
    historyDetails: cut(failure.details),
    index: retry ? undefined : deps.deadLetters.enter(place, now),
  };
}

/** Every task reachable from a task through its children. */
export function descendantsOf(loaded: LoadedWorkflow, taskId: string): string[] {
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
