import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  assignmentLimitOf,
  baseBytes,
  type CompiledTask,
  type CompiledWorkflow,
  staticInputBytes,
} from "../definitions/index.js";
import type { StartBudget } from "../runs/index.js";
import { newLeaseNonce, textSize, valueSize } from "../shared/index.js";

/** A task failure that says why a task's inputs cannot be handed to a worker. */
export interface InputsFailure {
  type: "InputsTooLarge";
  message: string;
  details: string;
}

/** What a started task's inputs come to: the assignment's values, or why it does not go out. */
export type AdmittedInputs =
  | { kind: "fits"; runInput: Value | undefined; parentOutputs: Record<string, Value> }
  | { kind: "too-large"; failure: InputsFailure }
  | { kind: "full" };

/**
 * The answer budget of one poll: the assignments it hands out stay within the answer limit, alone
 * and together. The START step gets {@link startBudget} and checks the stored sizes of the run input
 * and the parents' outputs before it reads them; once they are read, {@link admit} measures them as
 * encoded and takes them out of what the poll has left.
 */
export class AssignmentBudget {
  /** Names this poll's assignments in the START step, which shares `left` among them. */
  private readonly group = newLeaseNonce();
  private left: number;

  constructor(
    /** The answer limit (--max-response-bytes). */
    private readonly maxBytes: number,
  ) {
    this.left = assignmentLimitOf(maxBytes);
  }

  /** The most one assignment may take. */
  get assignmentLimit(): number {
    return assignmentLimitOf(this.maxBytes);
  }

  /** What the START step of `task` may take. */
  startBudget(compiled: CompiledWorkflow, task: CompiledTask): StartBudget {
    const base = baseBytes(compiled, task);
    return { limit: this.assignmentLimit - base, group: this.group, left: this.left, base };
  }

  /**
   * The values of a started task's run input and parents' outputs (as the START step returned them)
   * when its assignment fits, which takes its size from the poll's budget; otherwise why not.
   */
  admit(
    compiled: CompiledWorkflow,
    task: CompiledTask,
    runInputText: string,
    parentTexts: readonly string[],
  ): AdmittedInputs {
    const base = baseBytes(compiled, task);
    let bytes = base;
    const parse = (text: string): Value => {
      const json = JSON.parse(text) as JsonValue;
      bytes += Math.max(textSize(text), valueSize(json));
      return fromJson(ValueSchema, json);
    };
    const runInput = runInputText === "" ? undefined : parse(runInputText);
    const runInputBytes = bytes - base;
    const parentOutputs: Record<string, Value> = {};
    const parents = task.parents;
    parents.forEach((parent, i) => {
      parentOutputs[parent] = parse(parentTexts[i] ?? "null");
    });
    if (bytes > this.assignmentLimit) {
      return {
        kind: "too-large",
        failure: inputsTooLarge(
          compiled,
          task,
          bytes,
          runInputBytes,
          bytes - base - runInputBytes,
          this.maxBytes,
        ),
      };
    }
    if (bytes > this.left) return { kind: "full" };
    this.left -= bytes;
    return { kind: "fits", runInput, parentOutputs };
  }

  /** The failure of a task whose START step found its stored inputs over the limit ('big'). */
  tooLarge(
    compiled: CompiledWorkflow,
    task: CompiledTask,
    inputsBytes: number,
    runInputBytes: number,
  ): AdmittedInputs {
    const bytes = baseBytes(compiled, task) + inputsBytes;
    return {
      kind: "too-large",
      failure: inputsTooLarge(
        compiled,
        task,
        bytes,
        runInputBytes,
        inputsBytes - runInputBytes,
        this.maxBytes,
      ),
    };
  }
}

function inputsTooLarge(
  compiled: CompiledWorkflow,
  task: CompiledTask,
  bytes: number,
  runInputBytes: number,
  parentBytes: number,
  maxBytes: number,
): InputsFailure {
  const inputBytes = staticInputBytes(task);
  const parents = task.parents.length;
  return {
    type: "InputsTooLarge",
    message:
      `the assignment of task "${task.id}" would take ${bytes} bytes, more than the ${assignmentLimitOf(maxBytes)} ` +
      `one assignment may (--max-response-bytes ${maxBytes}): the outputs of its ${parents} ` +
      `parent${parents === 1 ? "" : "s"} take ${parentBytes} bytes, the run input ${runInputBytes}, ` +
      `its own input ${inputBytes}; it was handed to no worker`,
    details: `workflow "${compiled.name}"`,
  };
}
