import { create, type JsonValue, toJson } from "@bufbuild/protobuf";
import { type Duration, type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  type ExecutionPlan,
  ExecutionPlanSchema,
  type RetryPolicy,
  type TaskTimeouts,
  type WorkflowDefinition,
} from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { durationToMs, type ResolvedRetryPolicy, resolveRetryPolicy } from "./retry-policy.js";
import type { Violation } from "./violations.js";

export type { Violation };

/** Limits applied when validating a definition. */
export interface ValidationLimits {
  maxTasks: number;
  maxPayloadBytes: number;
}

/** Daemon-wide defaults for what neither the task nor the workflow sets. */
export interface CompileDefaults {
  retry: ResolvedRetryPolicy;
  heartbeatTimeoutMs: number;
}

/** One task of a compiled workflow, with every setting resolved. */
export interface CompiledTask {
  id: string;
  /** Position in the definition. */
  index: number;
  handler: string;
  /** Task queue; "default" when the definition leaves it empty. */
  queue: string;
  /** Ids of the tasks this one depends on, in depends_on order. */
  parents: string[];
  /** Ids of the tasks that depend on this one, in definition order. */
  children: string[];
  /** Static input as a plain JSON value, or undefined when unset. */
  input: JsonValue | undefined;
  retry: ResolvedRetryPolicy;
  heartbeatTimeoutMs: number;
  /** 0: no limit. */
  startToCloseMs: number;
  /** 0: no limit. */
  scheduleToStartMs: number;
  /** Literal or template over the run input; "" when the task has no key. */
  rateLimitKey: string;
}

/** A validated definition turned into the graph the engine runs. */
export interface CompiledWorkflow {
  name: string;
  /** Tasks in definition order. */
  tasks: CompiledTask[];
  byId: Map<string, CompiledTask>;
  /** Tasks without parents, in definition order. */
  roots: string[];
  /** Tasks without children, in definition order. */
  leaves: string[];
  /** Kahn layers: every task of layer k depends only on earlier layers; each in definition order. */
  layers: string[][];
  /** Wall-clock limit of a run; 0: none. */
  runTimeoutMs: number;
  continueOnFailure: boolean;
}

/** Queue used when a task names none. */
export const DEFAULT_QUEUE = "default";

const IDENT_MAX = 128;
const IDENT_CHAR = /[^A-Za-z0-9_.-]/;
const RATE_LIMIT_KEY_MAX = 256;
const MAX_ATTEMPTS_MAX = 1000;
const DURATION_SECONDS_MAX = 315_576_000_000n;
const TEMPLATE = /\{\{([^{}]*)\}\}/g;
const TEMPLATE_EXPR = /^input(\.[A-Za-z0-9_-]+)+$/;

/** What is wrong with an identifier (name, task id, queue), or undefined. */
function identProblem(what: string, value: string): string | undefined {
  if (value.length === 0) return `${what} is required`;
  if (value.length > IDENT_MAX)
    return `${what} is ${value.length} characters, over the limit of ${IDENT_MAX}`;
  const bad = IDENT_CHAR.exec(value);
  if (bad !== null) return `${what} contains ${JSON.stringify(bad[0])}; use only A-Z a-z 0-9 _ . -`;
  return undefined;
}

/**
 * What is wrong with a rate-limit key, or undefined. A key is literal text with
 * any number of `{{input.field.sub}}` placeholders over the run input.
 */
export function rateLimitKeyProblem(key: string): string | undefined {
  if (key.length > RATE_LIMIT_KEY_MAX) {
    return `rate_limit_key is ${key.length} characters, over the limit of ${RATE_LIMIT_KEY_MAX}`;
  }
  for (const m of key.matchAll(TEMPLATE)) {
    const expr = (m[1] ?? "").trim();
    if (!TEMPLATE_EXPR.test(expr)) {
      return `rate_limit_key placeholder ${JSON.stringify(m[0])} must look like {{input.field}}`;
    }
  }
  const rest = key.replace(TEMPLATE, "");
  if (rest.includes("{{")) return `rate_limit_key has an unclosed "{{"`;
  if (rest.includes("}}")) return `rate_limit_key has a "}}" without "{{"`;
  return undefined;
}

/** A duration's problem, or undefined; `positive` also rejects zero. */
function durationProblem(what: string, d: Duration, positive = false): string | undefined {
  const { seconds, nanos } = d;
  if (seconds < 0n || nanos < 0) return `${what} must not be negative`;
  if (seconds > DURATION_SECONDS_MAX || nanos > 999_999_999) return `${what} is not a valid duration`;
  if (positive && seconds === 0n && nanos === 0) return `${what} must be positive`;
  return undefined;
}

function checkRetry(path: string, p: RetryPolicy, out: Violation[]): void {
  if (!Number.isInteger(p.maxAttempts) || p.maxAttempts < 0 || p.maxAttempts > MAX_ATTEMPTS_MAX) {
    out.push({
      field: `${path}.max_attempts`,
      description: `max_attempts must be between 0 (inherit) and ${MAX_ATTEMPTS_MAX}`,
    });
  }
  for (const [name, d] of [
    ["initial_backoff", p.initialBackoff],
    ["max_backoff", p.maxBackoff],
  ] as const) {
    const problem = d === undefined ? undefined : durationProblem(name, d);
    if (problem !== undefined) out.push({ field: `${path}.${name}`, description: problem });
  }
  const c = p.backoffCoefficient;
  if (c !== 0 && !(c >= 1 && Number.isFinite(c))) {
    out.push({
      field: `${path}.backoff_coefficient`,
      description: "backoff_coefficient must be 0 (inherit) or at least 1",
    });
  }
  if (p.jitter !== undefined && !(p.jitter >= 0 && p.jitter <= 1)) {
    out.push({ field: `${path}.jitter`, description: "jitter must be between 0 and 1" });
  }
}

function checkTimeouts(path: string, t: TaskTimeouts, out: Violation[]): void {
  for (const [name, d, positive] of [
    ["start_to_close", t.startToClose, false],
    ["heartbeat", t.heartbeat, true],
    ["schedule_to_start", t.scheduleToStart, false],
  ] as const) {
    const problem = d === undefined ? undefined : durationProblem(name, d, positive);
    if (problem !== undefined) out.push({ field: `${path}.${name}`, description: problem });
  }
}

/** Size in bytes of a Value as JSON, or an error message when it is not valid JSON. */
function jsonSize(v: Value): number | string {
  try {
    return Buffer.byteLength(JSON.stringify(toJson(ValueSchema, v)), "utf8");
  } catch (err) {
    return `input is not valid JSON: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/**
 * Finds one cycle among tasks, following edges from parent to child, by an
 * iterative three-color DFS. Returns the task indexes of the cycle, starting
 * and ending at the same task (its lowest index), or undefined.
 */
function findCycle(children: number[][]): number[] | undefined {
  const n = children.length;
  const color = new Uint8Array(n); // 0 white, 1 on the stack, 2 done
  const stackNode: number[] = [];
  const stackEdge: number[] = [];
  for (let start = 0; start < n; start++) {
    if (color[start] !== 0) continue;
    color[start] = 1;
    stackNode.push(start);
    stackEdge.push(0);
    while (stackNode.length > 0) {
      const top = stackNode.length - 1;
      const node = stackNode[top]!;
      const edges = children[node]!;
      const e = stackEdge[top]!;
      if (e === edges.length) {
        color[node] = 2;
        stackNode.pop();
        stackEdge.pop();
        continue;
      }
      stackEdge[top] = e + 1;
      const next = edges[e]!;
      if (color[next] === 0) {
        color[next] = 1;
        stackNode.push(next);
        stackEdge.push(0);
      } else if (color[next] === 1) {
        const cycle = stackNode.slice(stackNode.lastIndexOf(next));
        let low = 0;
        for (let i = 1; i < cycle.length; i++) if (cycle[i]! < cycle[low]!) low = i;
        const rotated = cycle.slice(low).concat(cycle.slice(0, low));
        rotated.push(rotated[0]!);
        return rotated;
      }
    }
  }
  return undefined;
}

/**
 * Every problem of a definition, each with the path of the offending field
 * (`definition.tasks[2].depends_on[0]`). Empty when the definition is valid.
 * Runs in O(tasks + edges).
 */
export function validateWorkflow(def: WorkflowDefinition, limits: ValidationLimits): Violation[] {
  const out: Violation[] = [];
  const nameProblem = identProblem("name", def.name);
  if (nameProblem !== undefined) out.push({ field: "definition.name", description: nameProblem });
  if (def.defaultRetry !== undefined) checkRetry("definition.default_retry", def.defaultRetry, out);
  if (def.defaultTimeouts !== undefined)
    checkTimeouts("definition.default_timeouts", def.defaultTimeouts, out);
  if (def.runTimeout !== undefined) {
    const problem = durationProblem("run_timeout", def.runTimeout);
    if (problem !== undefined) out.push({ field: "definition.run_timeout", description: problem });
  }

  const tasks = def.tasks;
  if (tasks.length === 0) {
    out.push({ field: "definition.tasks", description: "workflow has no tasks" });
    return out;
  }
  if (tasks.length > limits.maxTasks) {
    out.push({
      field: "definition.tasks",
      description: `workflow has ${tasks.length} tasks, over the limit of ${limits.maxTasks}`,
    });
    return out;
  }

  // Ids first, so that depends_on can name tasks defined later.
  const indexOf = new Map<string, number>();
  tasks.forEach((t, i) => {
    const path = `definition.tasks[${i}]`;
    const idProblem = identProblem("id", t.id);
    if (idProblem !== undefined) {
      out.push({ field: `${path}.id`, description: idProblem });
      return;
    }
    const first = indexOf.get(t.id);
    if (first !== undefined) {
      out.push({
        field: `${path}.id`,
        description: `id ${JSON.stringify(t.id)} is already used by definition.tasks[${first}]`,
      });
    } else {
      indexOf.set(t.id, i);
    }
  });

  const children: number[][] = tasks.map(() => []);
  tasks.forEach((t, i) => {
    const path = `definition.tasks[${i}]`;
    if (t.handler === "") out.push({ field: `${path}.handler`, description: "handler is required" });
    if (t.queue !== "") {
      const problem = identProblem("queue", t.queue);
      if (problem !== undefined) out.push({ field: `${path}.queue`, description: problem });
    }
    const seen = new Set<string>();
    t.dependsOn.forEach((dep, k) => {
      const field = `${path}.depends_on[${k}]`;
      const parent = indexOf.get(dep);
      if (dep === t.id && t.id !== "") {
        out.push({ field, description: `task ${JSON.stringify(t.id)} depends on itself` });
      } else if (parent === undefined) {
        out.push({ field, description: `depends_on names unknown task ${JSON.stringify(dep)}` });
      } else if (seen.has(dep)) {
        out.push({ field, description: `depends_on lists ${JSON.stringify(dep)} twice` });
      } else {
        children[parent]!.push(i);
      }
      seen.add(dep);
    });
    if (t.input !== undefined) {
      const size = jsonSize(t.input);
      if (typeof size === "string") {
        out.push({ field: `${path}.input`, description: size });
      } else if (size > limits.maxPayloadBytes) {
        out.push({
          field: `${path}.input`,
          description: `input is ${size} bytes as JSON, over the limit of ${limits.maxPayloadBytes}`,
        });
      }
    }
    if (t.retry !== undefined) checkRetry(`${path}.retry`, t.retry, out);
    if (t.timeouts !== undefined) checkTimeouts(`${path}.timeouts`, t.timeouts, out);
    if (t.rateLimitKey !== "") {
      const problem = rateLimitKeyProblem(t.rateLimitKey);
      if (problem !== undefined) out.push({ field: `${path}.rate_limit_key`, description: problem });
    }
  });

  // Self-dependencies are reported above and left out of the edges.
  const cycle = findCycle(children);
  if (cycle !== undefined) {
    out.push({
      field: "definition.tasks",
      description: `cycle: ${cycle.map((i) => tasks[i]!.id).join(" -> ")}`,
    });
  }
  return out;
}

function timeoutMs(
  get: (t: TaskTimeouts) => Duration | undefined,
  task: TaskTimeouts | undefined,
  workflow: TaskTimeouts | undefined,
  fallback: number,
): number {
  const d =
    (task === undefined ? undefined : get(task)) ?? (workflow === undefined ? undefined : get(workflow));
  return d === undefined ? fallback : durationToMs(d);
}

/**
 * Compiles a definition that {@link validateWorkflow} accepted: resolves every
 * task's settings (task → workflow default → daemon default) and computes the
 * graph's edges, roots, leaves and Kahn layers. Throws on a definition with an
 * unknown dependency or a cycle.
 */
export function compileWorkflow(def: WorkflowDefinition, defaults: CompileDefaults): CompiledWorkflow {
  const byId = new Map<string, CompiledTask>();
  const workflowRetry = resolveRetryPolicy(undefined, def.defaultRetry, defaults.retry);
  const wt = def.defaultTimeouts;
  const tasks = def.tasks.map((t, index): CompiledTask => {
    const tt = t.timeouts;
    const task: CompiledTask = {
      id: t.id,
      index,
      handler: t.handler,
      queue: t.queue === "" ? DEFAULT_QUEUE : t.queue,
      parents: [...new Set(t.dependsOn)],
      children: [],
      input: t.input === undefined ? undefined : toJson(ValueSchema, t.input),
      // Tasks without their own policy share the workflow's resolved one.
      retry:
        t.retry === undefined ? workflowRetry : resolveRetryPolicy(t.retry, def.defaultRetry, defaults.retry),
      heartbeatTimeoutMs: timeoutMs((x) => x.heartbeat, tt, wt, defaults.heartbeatTimeoutMs),
      startToCloseMs: timeoutMs((x) => x.startToClose, tt, wt, 0),
      scheduleToStartMs: timeoutMs((x) => x.scheduleToStart, tt, wt, 0),
      rateLimitKey: t.rateLimitKey,
    };
    byId.set(t.id, task);
    return task;
  });

  const pending = new Int32Array(tasks.length);
  for (const task of tasks) {
    pending[task.index] = task.parents.length;
    for (const p of task.parents) {
      const parent = byId.get(p);
      if (parent === undefined) throw new Error(`task "${task.id}" depends on unknown task "${p}"`);
      parent.children.push(task.id);
    }
  }

  // Kahn's algorithm: a task's layer is one past its deepest parent's.
  const level = new Int32Array(tasks.length);
  let frontier = tasks.filter((t) => t.parents.length === 0);
  let placed = 0;
  let depth = 0;
  while (frontier.length > 0) {
    const next: CompiledTask[] = [];
    for (const task of frontier) {
      level[task.index] = depth;
      placed++;
      for (const c of task.children) {
        const child = byId.get(c)!;
        if (--pending[child.index]! === 0) next.push(child);
      }
    }
    frontier = next;
    depth++;
  }
  if (placed !== tasks.length) throw new Error(`workflow "${def.name}" has a cycle`);
  const layers: string[][] = Array.from({ length: depth }, () => []);
  for (const task of tasks) layers[level[task.index]!]!.push(task.id);

  return {
    name: def.name,
    tasks,
    byId,
    roots: tasks.filter((t) => t.parents.length === 0).map((t) => t.id),
    leaves: tasks.filter((t) => t.children.length === 0).map((t) => t.id),
    layers,
    runTimeoutMs: def.runTimeout === undefined ? 0 : durationToMs(def.runTimeout),
    continueOnFailure: def.continueOnFailure,
  };
}

/** The ExecutionPlan message of a compiled workflow. */
export function planOf(compiled: CompiledWorkflow): ExecutionPlan {
  return create(ExecutionPlanSchema, { layers: compiled.layers.map((taskIds) => ({ taskIds })) });
}
