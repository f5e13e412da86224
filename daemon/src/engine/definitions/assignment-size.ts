import { textSize, valueSize } from "../shared/index.js";
import type { CompiledTask, CompiledWorkflow } from "./compiled-workflow.js";

/** Bytes kept in every answer for its own framing (the field of the first assignment, the envelope). */
const ANSWER_FRAMING = 16;

/**
 * Bytes an assignment takes besides its task's strings, its input and the run input and parents'
 * outputs: the run id, lease id parts, numbers, the three timestamps and durations, the fields'
 * tags and lengths, and the assignment's own field in the answer; generous.
 */
const ASSIGNMENT_FIXED = 256;
/** Bytes a parent's entry takes in `parent_outputs` besides its id and its output. */
const PARENT_ENTRY = 16;

/** Bytes of every task's assignment besides the run input and parents' outputs, by workflow version. */
const baseCache = new WeakMap<CompiledWorkflow, Float64Array>();

/** Bytes of a task's static input as a payload (the larger of its JSON text and its encoding). */
export function staticInputBytes(task: CompiledTask): number {
  if (task.input === undefined) return 0;
  return Math.max(textSize(JSON.stringify(task.input)), valueSize(task.input));
}

/**
 * Bytes of a task's assignment besides the run input and its parents' outputs: an upper bound,
 * computed once per workflow version and task. SubmitWorkflow checks it against the answer limit;
 * each poll's budget starts from it (see AssignmentBudget).
 */
export function baseBytes(compiled: CompiledWorkflow, task: CompiledTask): number {
  let cache = baseCache.get(compiled);
  if (cache === undefined) {
    cache = new Float64Array(compiled.size).fill(-1);
    baseCache.set(compiled, cache);
  }
  const known = cache[task.index] ?? -1;
  if (known >= 0) return known;
  let bytes = ASSIGNMENT_FIXED + 2 * textSize(task.id) + textSize(compiled.name);
  bytes += textSize(task.handler) + textSize(task.queue) + staticInputBytes(task);
  for (const parent of task.parents) bytes += PARENT_ENTRY + textSize(parent);
  cache[task.index] = bytes;
  return bytes;
}

/** Most bytes one assignment may take under an answer limit (what {@link baseBytes} is checked against). */
export function assignmentLimitOf(maxBytes: number): number {
  return maxBytes - ANSWER_FRAMING;
}
