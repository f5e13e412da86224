import type { CompiledWorkflow } from "../definitions/index.js";
import type { ResumedTask } from "../runs/index.js";

/** What a resume does to a run's tasks. */
export interface ResumePlan {
  /** Every task that runs again, in definition order, with its parents not succeeded ("-": a root). */
  tasks: ResumedTask[];
  /** Those queued at once (no parent runs again). */
  queued: string[];
  /** Those that were queued once (they may have a BullMQ job or timer left from before). */
  recorded: string[];
}

/**
 * Plans a resume from the tasks' statuses (one letter each, in definition order: S succeeded, P
 * pending with no record, k skipped without ever being queued, or another status): every task that did not succeed runs again and, with
 * `fromTask`, that task and its descendants too, even if they succeeded. A task succeeds only once
 * all its parents did, so whatever depends on a task that runs again runs again too: a task's
 * parents that run again are the ones it waits for.
 */
export function planResume(
  compiled: CompiledWorkflow,
  statusAt: (index: number) => string,
  fromTask?: string,
): ResumePlan {
  const n = compiled.size;
  const again = new Uint8Array(n);
  for (let i = 0; i < n; i++) if (statusAt(i) !== "S") again[i] = 1;
  const from = fromTask === undefined || fromTask === "" ? undefined : compiled.byId.get(fromTask);
  if (from !== undefined) {
    const stack = [from.index];
    while (stack.length > 0) {
      const i = stack.pop() as number;
      if (again[i] === 2) continue;
      // 2: reached from the named task, its children to visit.
      again[i] = 2;
      for (const child of compiled.childIndexes(i)) stack.push(child);
    }
  }
  const plan: ResumePlan = { tasks: [], queued: [], recorded: [] };
  for (let i = 0; i < n; i++) {
    if (again[i] === 0) continue;
    const id = compiled.idAt(i);
    const parents = compiled.parentIndexes(i);
    let waiting = 0;
    for (const p of parents) if (again[p] !== 0) waiting++;
    plan.tasks.push({ id, parents: parents.length === 0 ? "-" : waiting });
    if (waiting === 0) plan.queued.push(id);
    const status = statusAt(i);
    if (status !== "P" && status !== "k") plan.recorded.push(id);
  }
  return plan;
}
