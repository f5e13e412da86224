import { toJson } from "@bufbuild/protobuf";
import { loadWorkflowFile } from "@weft/sdk";
import { WorkflowSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import type { Command } from "../command.js";
import { UsageError } from "../exit-codes.js";
import { table, time } from "../format.js";
import { oneArg, positiveInt } from "./args.js";

function layerLines(layers: string[][]): string {
  return `layers:\n${layers.map((l, i) => `  ${i + 1}: ${l.join(", ")}\n`).join("")}`;
}

/** `weft workflows submit FILE`. */
export const workflowsSubmit: Command = {
  path: ["workflows", "submit"],
  summary: "validate and store a workflow from a YAML or JSON file",
  help: `Usage: weft workflows submit FILE [--validate-only]

Validates the workflow in FILE (YAML or JSON) and stores it, versioned by content: the same content
again keeps its version, new content gets the next one. Prints the version and the execution plan.

Options:
  --validate-only   only validate and print the plan (layers of tasks that may run together)`,
  options: { "validate-only": { type: "boolean" } },
  async run({ args, options, io, client }) {
    const file = oneArg(args, "FILE");
    const spec = await loadWorkflowFile(file);
    const validateOnly = options["validate-only"] === true;
    const res = await client().submitWorkflow(spec, { validateOnly });
    if (options.json === true) {
      io.out(
        `${JSON.stringify({ workflow: toJson(WorkflowSchema, res.workflow), created: res.created, layers: res.layers })}\n`,
      );
      return 0;
    }
    const w = res.workflow;
    const count = w.definition?.tasks.length ?? 0;
    if (validateOnly) {
      io.out(`workflow ${w.name} is valid (nothing stored): ${count} tasks in ${res.layers.length} layers\n`);
    } else {
      io.out(
        `workflow ${w.name} version ${w.version} ${res.created ? "created" : "unchanged (same content)"}\n`,
      );
    }
    io.out(layerLines(res.layers));
    return 0;
  },
};

/** `weft workflows ls`. */
export const workflowsList: Command = {
  path: ["workflows", "ls"],
  summary: "list workflows",
  help: "Usage: weft workflows ls\n\nLists every workflow with its latest version, task count and last update.",
  options: {},
  async run({ args, options, io, client }) {
    if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
    const rows: string[][] = [];
    for await (const w of client().listWorkflows()) {
      if (options.json === true) {
        io.out(
          `${JSON.stringify({ name: w.name, latestVersion: w.latestVersion, taskCount: w.taskCount, updateTime: time(w.updateTime) })}\n`,
        );
      }
      rows.push([w.name, String(w.latestVersion), String(w.taskCount), time(w.updateTime)]);
    }
    if (options.json === true) return 0;
    io.out(rows.length === 0 ? "no workflows\n" : table(["NAME", "VERSION", "TASKS", "UPDATED"], rows));
    return 0;
  },
};

/** `weft workflows get NAME`. */
export const workflowsGet: Command = {
  path: ["workflows", "get"],
  summary: "show a workflow's tasks and plan",
  help: `Usage: weft workflows get NAME [--version N]

Shows a workflow version (the latest by default): its tasks, their handlers, queues and
dependencies, and its execution plan. With --json, the stored workflow as JSON.

Options:
  --version <n>   the version to show (default: the latest)`,
  options: { version: { type: "string" } },
  async run({ args, options, io, client }) {
    const name = oneArg(args, "NAME");
    const version = options.version === undefined ? 0 : positiveInt(String(options.version), "--version");
    const { workflow, layers } = await client().getWorkflow(name, version);
    if (options.json === true) {
      io.out(`${JSON.stringify({ workflow: toJson(WorkflowSchema, workflow), layers })}\n`);
      return 0;
    }
    const def = workflow.definition;
    io.out(`workflow ${workflow.name} version ${workflow.version}\n`);
    if (def?.description) io.out(`description: ${def.description}\n`);
    io.out(`created: ${time(workflow.createTime)}\n`);
    const rows = (def?.tasks ?? []).map((t) => [
      t.id,
      t.handler,
      t.queue === "" ? "default" : t.queue,
      t.dependsOn.length === 0 ? "-" : t.dependsOn.join(","),
    ]);
    io.out(table(["TASK", "HANDLER", "QUEUE", "DEPENDS ON"], rows));
    io.out(layerLines(layers));
    return 0;
  },
};
