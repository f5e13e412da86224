import { toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type ExecutionPlan,
  ExecutionPlanSchema,
  type WorkflowDefinition,
  WorkflowDefinitionSchema,
} from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { ANSWER_FRAMING, type Violation } from "../shared/index.js";
import { assignmentLimitOf, baseBytes } from "./assignment-size.js";
import type { CompiledWorkflow } from "./compiled-workflow.js";

/** Bytes of a workflow answer besides its definition and plan (name, version, time, hash, framing). */
const WORKFLOW_FIXED = 512;

/** Bytes of the answers that echo a workflow version (SubmitWorkflow, GetWorkflow). */
export function workflowAnswerBytes(definitionBytes: number, plan: ExecutionPlan): number {
  return WORKFLOW_FIXED + definitionBytes + toBinary(ExecutionPlanSchema, plan).length;
}

/**
 * What of a definition can be known at SubmitWorkflow not to fit the answer limit: the answer that
 * echoes it with its plan, and each task's assignment without its run input and parents' outputs
 * (its input, its id and its parents' ids, each parent's output at least a null).
 */
export function answerViolations(
  def: WorkflowDefinition,
  compiled: CompiledWorkflow,
  plan: ExecutionPlan,
  maxBytes: number,
): Violation[] {
  const violations: Violation[] = [];
  const limit = assignmentLimitOf(maxBytes);
  for (let i = 0; i < compiled.size; i++) {
    const task = compiled.task(i);
    const bytes = baseBytes(compiled, task) + 2 * task.parents.length;
    if (bytes <= limit) continue;
    const parents = task.parents.length;
    violations.push({
      field: task.input === undefined || parents > 0 ? `tasks[${i}]` : `tasks[${i}].input`,
      description:
        `an assignment of this task would take at least ${bytes} bytes (its input, its id and the ids of ` +
        `its ${parents} parent${parents === 1 ? "" : "s"}), more than the ${limit} one assignment may ` +
        `(--max-response-bytes ${maxBytes})`,
    });
  }
  const answer = workflowAnswerBytes(toBinary(WorkflowDefinitionSchema, def).length, plan);
  if (answer > maxBytes - ANSWER_FRAMING) {
    violations.push({
      field: "definition",
      description:
        `the definition and its execution plan would take ${answer} bytes in an answer, more than ` +
        `--max-response-bytes (${maxBytes}) allows`,
    });
  }
  return violations;
}

/** RESOURCE_EXHAUSTED for a stored version whose answer no longer fits (the limit was lowered). */
export function workflowTooLarge(
  name: string,
  version: number,
  bytes: number,
  maxBytes: number,
): ConnectError {
  return new ConnectError(
    `workflow "${name}" version ${version} would take ${bytes} bytes in an answer, more than ` +
      `--max-response-bytes (${maxBytes}) allows`,
    Code.ResourceExhausted,
  );
}
