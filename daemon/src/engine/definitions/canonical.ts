import { createHash } from "node:crypto";
import { type JsonValue, toJson } from "@bufbuild/protobuf";
import { type WorkflowDefinition, WorkflowDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";

/**
 * JSON text of a value with the keys of every object sorted (by UTF-16 code
 * units), so that the same content gives the same text whatever order its
 * maps were built in.
 */
export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const keys = Object.keys(value).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k]!)}`).join(",")}}`;
}

/**
 * Hex SHA-256 of a definition's canonical form: its proto3 JSON (fields at
 * their defaults omitted, so explicit and implicit zeros agree) with sorted
 * object keys. Identical content gives an identical hash, whatever the key
 * order inside Struct inputs; any other change gives a different one.
 */
export function contentHash(def: WorkflowDefinition): string {
  return createHash("sha256")
    .update(canonicalJson(toJson(WorkflowDefinitionSchema, def)))
    .digest("hex");
}
