import { create } from "@bufbuild/protobuf";
import { type TaskError, TaskErrorSchema } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { NonRetryableError } from "./errors.js";

/** A handler failure as reported with FailTask. */
export interface TaskFailure {
  error: TaskError;
  /** `false` for a {@link NonRetryableError}; unset otherwise (the daemon reads unset as true). */
  retryable?: boolean;
}

/**
 * Describes whatever a handler threw: type is the error's `type` property if it is a string, else
 * its name; details is the stack.
 */
export function taskFailureFrom(thrown: unknown): TaskFailure {
  const error = create(TaskErrorSchema, describe(thrown));
  return thrown instanceof NonRetryableError ? { error, retryable: false } : { error };
}

function describe(thrown: unknown): { type: string; message: string; details: string } {
  if (thrown instanceof Error) {
    const type = "type" in thrown && typeof thrown.type === "string" && thrown.type !== "" ? thrown.type : "";
    return { type: type || thrown.name || "Error", message: thrown.message, details: thrown.stack ?? "" };
  }
  // A handler may throw a non-Error (a string, an object); keep what a person needs to see.
  const message = typeof thrown === "string" ? thrown : safeStringify(thrown);
  return { type: "Error", message, details: "" };
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
