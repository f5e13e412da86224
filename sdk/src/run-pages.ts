import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { CallOptions, Client } from "@connectrpc/connect";
import type { Run, TaskRun } from "./gen/weft/v1/run_pb.js";
import type { WorkflowService } from "./gen/weft/v1/workflow_service_pb.js";
import { fromValue } from "./json-value.js";

type WorkflowRpc = Client<typeof WorkflowService>;

/**
 * A run with every task run: GetRun's pages (an answer holds as many task runs as fit within
 * weftd's answer limit) put together. Payloads left out of the answers stay left out, named in
 * omitted_fields; {@link taskRunWhole} fetches them.
 */
export async function wholeRun(rpc: WorkflowRpc, runId: string, options: CallOptions): Promise<Run> {
  const first = await rpc.getRun({ runId }, options);
  const run = first.run as Run;
  let token = first.nextTaskPageToken;
  while (token !== "") {
    const page = await rpc.getRun({ runId, taskPageToken: token }, options);
    run.tasks.push(...(page.run?.tasks ?? []));
    token = page.nextTaskPageToken;
  }
  run.omittedFields = run.omittedFields.filter((f) => f !== "tasks");
  return run;
}

/** One task run with its output, error and progress (GetTaskRun). */
export async function taskRunWhole(
  rpc: WorkflowRpc,
  runId: string,
  taskId: string,
  options: CallOptions,
): Promise<TaskRun> {
  return (await rpc.getTaskRun({ runId, taskId }, options)).task as TaskRun;
}

/**
 * The output of a run that succeeded when weftd left it out (its leaves' outputs together were over
 * the answer limit): the object of its leaves' outputs, each fetched with GetTaskRun.
 */
export async function assembledOutput(rpc: WorkflowRpc, run: Run, options: CallOptions): Promise<JsonValue> {
  const { workflow } = await rpc.getWorkflow({ name: run.workflow, version: run.workflowVersion }, options);
  const tasks = workflow?.definition?.tasks ?? [];
  const parents = new Set(tasks.flatMap((t) => t.dependsOn));
  const output: JsonObject = {};
  for (const t of tasks) {
    if (parents.has(t.id)) continue;
    const task = await taskRunWhole(rpc, run.id, t.id, options);
    output[t.id] = fromValue(task.output);
  }
  return output;
}
