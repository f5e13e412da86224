import { readFile } from "node:fs/promises";
import type { JsonValue } from "@bufbuild/protobuf";
import { parse as parseYaml } from "yaml";
import { type DurationInput, durationMs } from "./duration.js";
import type { RetrySpec, TaskSpec, TimeoutsSpec, WorkflowSpec } from "./workflow-spec.js";

/** A workflow file or object is malformed; `path` names the offending field, e.g. `tasks[1].depends_on`. */
export class WorkflowSpecError extends Error {
  override readonly name = "WorkflowSpecError";
  /** Path of the offending field; empty for the document itself. */
  readonly path: string;

  constructor(path: string, problem: string, source?: string) {
    const where = [source, path].filter((s) => s !== undefined && s !== "").join(": ");
    super(where === "" ? problem : `${where}: ${problem}`);
    this.path = path;
  }
}

/**
 * Reads a workflow from a YAML or JSON file (YAML is a superset of JSON: any extension works).
 * Keys may be camelCase (`dependsOn`) or snake_case (`depends_on`); durations are `"30s"` strings
 * or milliseconds. @throws WorkflowSpecError naming the file and the field.
 */
export async function loadWorkflowFile(path: string): Promise<WorkflowSpec> {
  return parseWorkflowText(await readFile(path, "utf8"), path);
}

/** Parses the YAML or JSON text of a workflow; `source` names it in errors. */
export function parseWorkflowText(text: string, source?: string): WorkflowSpec {
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (err) {
    throw new WorkflowSpecError(
      "",
      `not valid YAML or JSON: ${(err as Error).message.split("\n")[0]}`,
      source,
    );
  }
  return parseWorkflowSpec(data, source);
}

/** Checks that `data` (decoded JSON or YAML) is a workflow and returns it as a {@link WorkflowSpec}. */
export function parseWorkflowSpec(data: unknown, source?: string): WorkflowSpec {
  const r = new Reader(source);
  const doc = r.object(data, "", WORKFLOW_FIELDS);
  const spec: WorkflowSpec = {
    name: r.string(doc.name, "name", true) ?? "",
    tasks: r.list(doc.tasks, "tasks", true).map((t, i) => task(r, t, `tasks[${i}]`)),
  };
  assign(spec, "description", r.string(doc.description, "description"));
  assign(spec, "defaultRetry", retry(r, doc.default_retry, "default_retry"));
  assign(spec, "defaultTimeouts", timeouts(r, doc.default_timeouts, "default_timeouts"));
  assign(spec, "runTimeout", r.duration(doc.run_timeout, "run_timeout"));
  assign(spec, "continueOnFailure", r.boolean(doc.continue_on_failure, "continue_on_failure"));
  return spec;
}

const WORKFLOW_FIELDS = [
  "name",
  "description",
  "tasks",
  "default_retry",
  "default_timeouts",
  "run_timeout",
  "continue_on_failure",
];
const TASK_FIELDS = ["id", "handler", "queue", "depends_on", "input", "retry", "timeouts", "rate_limit_key"];
const RETRY_FIELDS = [
  "max_attempts",
  "initial_backoff",
  "backoff_coefficient",
  "max_backoff",
  "jitter",
  "non_retryable_error_types",
];
const TIMEOUT_FIELDS = ["start_to_close", "heartbeat", "schedule_to_start"];

function task(r: Reader, data: unknown, path: string): TaskSpec {
  const t = r.object(data, path, TASK_FIELDS);
  const spec: TaskSpec = { id: r.string(t.id, `${path}.id`, true) ?? "" };
  assign(spec, "handler", r.string(t.handler, `${path}.handler`));
  assign(spec, "queue", r.string(t.queue, `${path}.queue`));
  assign(spec, "dependsOn", r.strings(t.depends_on, `${path}.depends_on`));
  if (t.input !== undefined) spec.input = t.input as JsonValue;
  assign(spec, "retry", retry(r, t.retry, `${path}.retry`));
  assign(spec, "timeouts", timeouts(r, t.timeouts, `${path}.timeouts`));
  assign(spec, "rateLimitKey", r.string(t.rate_limit_key, `${path}.rate_limit_key`));
  return spec;
}

function retry(r: Reader, data: unknown, path: string): RetrySpec | undefined {
  if (data === undefined) return undefined;
  const o = r.object(data, path, RETRY_FIELDS);
  const spec: RetrySpec = {};
  assign(spec, "maxAttempts", r.number(o.max_attempts, `${path}.max_attempts`));
  assign(spec, "initialBackoff", r.duration(o.initial_backoff, `${path}.initial_backoff`));
  assign(spec, "backoffCoefficient", r.number(o.backoff_coefficient, `${path}.backoff_coefficient`));
  assign(spec, "maxBackoff", r.duration(o.max_backoff, `${path}.max_backoff`));
  assign(spec, "jitter", r.number(o.jitter, `${path}.jitter`));
  assign(
    spec,
    "nonRetryableErrorTypes",
    r.strings(o.non_retryable_error_types, `${path}.non_retryable_error_types`),
  );
  return spec;
}

function timeouts(r: Reader, data: unknown, path: string): TimeoutsSpec | undefined {
  if (data === undefined) return undefined;
  const o = r.object(data, path, TIMEOUT_FIELDS);
  const spec: TimeoutsSpec = {};
  assign(spec, "startToClose", r.duration(o.start_to_close, `${path}.start_to_close`));
  assign(spec, "heartbeat", r.duration(o.heartbeat, `${path}.heartbeat`));
  assign(spec, "scheduleToStart", r.duration(o.schedule_to_start, `${path}.schedule_to_start`));
  return spec;
}

/** Sets `target[key]` only when `value` is defined (exactOptionalPropertyTypes-friendly). */
function assign<T, K extends keyof T>(target: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) target[key] = value;
}

/** camelCase → snake_case, so that both spellings of a field are accepted. */
function snake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Type checks with errors naming the field. */
class Reader {
  constructor(private readonly source: string | undefined) {}

  fail(path: string, problem: string): never {
    throw new WorkflowSpecError(path, problem, this.source);
  }

  /** An object whose keys (either spelling) are all in `fields`, keyed by snake_case. */
  object(data: unknown, path: string, fields: string[]): Record<string, unknown> {
    if (typeof data !== "object" || data === null || Array.isArray(data)) {
      this.fail(path, path === "" ? "must be a mapping with name and tasks" : "must be a mapping");
    }
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(data)) {
      const name = snake(key);
      const at = path === "" ? key : `${path}.${key}`;
      if (!fields.includes(name)) this.fail(at, `unknown field (expected one of ${fields.join(", ")})`);
      if (name in out) this.fail(at, `given twice (as ${name} and ${key})`);
      out[name] = value;
    }
    return out;
  }

  list(data: unknown, path: string, required = false): unknown[] {
    if (data === undefined && !required) return [];
    if (!Array.isArray(data))
      this.fail(path, required && data === undefined ? "is required" : "must be a list");
    return data;
  }

  string(data: unknown, path: string, required = false): string | undefined {
    if (data === undefined && !required) return undefined;
    if (data === undefined) this.fail(path, "is required");
    if (typeof data !== "string") this.fail(path, "must be a string");
    return data;
  }

  strings(data: unknown, path: string): string[] | undefined {
    if (data === undefined) return undefined;
    return this.list(data, path).map((v, i) => this.string(v, `${path}[${i}]`, true) ?? "");
  }

  number(data: unknown, path: string): number | undefined {
    if (data === undefined) return undefined;
    if (typeof data !== "number" || !Number.isFinite(data)) this.fail(path, "must be a number");
    return data;
  }

  boolean(data: unknown, path: string): boolean | undefined {
    if (data === undefined) return undefined;
    if (typeof data !== "boolean") this.fail(path, "must be true or false");
    return data;
  }

  duration(data: unknown, path: string): DurationInput | undefined {
    if (data === undefined) return undefined;
    if (typeof data !== "number" && typeof data !== "string")
      this.fail(path, 'must be a duration such as "30s"');
    try {
      durationMs(data);
    } catch (err) {
      this.fail(path, (err as Error).message);
    }
    return data;
  }
}
