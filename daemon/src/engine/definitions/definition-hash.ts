import { createHash } from "node:crypto";
import { create, type JsonObject, toJson } from "@bufbuild/protobuf";
import {
  TaskDefinitionSchema,
  type WorkflowDefinition,
  WorkflowDefinitionSchema,
} from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { canonicalJson } from "./canonical.js";

/** Tasks whose canonical JSON is hashed in one update. */
const TASKS_PER_UPDATE = 512;

/**
 * The content hash of a definition, equal to `contentHash` of canonical.ts
 * (hex SHA-256 of its canonical proto3 JSON) but computed task by task: the
 * JSON of a 100,000-task definition is never built whole, as an object graph
 * or as text, so hashing it takes a few MiB rather than a hundred.
 */
export function definitionHash(def: WorkflowDefinition): string {
  const hash = createHash("sha256");
  // Without its tasks, the definition's JSON has no "tasks" key (an empty list is left out).
  const head = toJson(
    WorkflowDefinitionSchema,
    create(WorkflowDefinitionSchema, { ...def, tasks: [] }),
  ) as JsonObject;
  const keys = Object.keys(head);
  if (def.tasks.length > 0) keys.push("tasks");
  keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  hash.update("{");
  keys.forEach((key, i) => {
    hash.update(`${i > 0 ? "," : ""}${JSON.stringify(key)}:`);
    if (key !== "tasks") {
      hash.update(canonicalJson(head[key]!));
      return;
    }
    hash.update("[");
    const { tasks } = def;
    for (let from = 0; from < tasks.length; from += TASKS_PER_UPDATE) {
      const parts: string[] = [];
      const to = Math.min(from + TASKS_PER_UPDATE, tasks.length);
      for (let t = from; t < to; t++) parts.push(canonicalJson(toJson(TaskDefinitionSchema, tasks[t]!)));
      hash.update(`${from > 0 ? "," : ""}${parts.join(",")}`);
    }
    hash.update("]");
  });
  hash.update("}");
  return hash.digest("hex");
}
