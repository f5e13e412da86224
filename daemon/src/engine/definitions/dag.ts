import { create, toJson } from "@bufbuild/protobuf";
import { type Duration, type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  type ExecutionPlan,
  ExecutionPlanSchema,
  type RetryPolicy,
  type TaskTimeouts,
  type WorkflowDefinition,
} from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { jsonValueOf, type Violation } from "../shared/index.js";
import { circuitBreakerProblems } from "./circuit-breaker.js";
import { CompiledWorkflow, levelsOf, type TaskSettings } from "./compiled-workflow.js";
import { durationToMs, type ResolvedRetryPolicy, resolveRetryPolicy } from "./retry-policy.js";

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

/** Queue used when a task names none. */
const DEFAULT_QUEUE = "default";

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

/** Path of a task in a definition, for violations. */
function taskPath(i: number): string {
  return `definition.tasks[${i}]`;
}

/**
 * Edges grouped by their first end: the edges of node i are
 * `list[start[i] .. start[i + 1]]`, in the order they were given.
 */
function adjacency(
  n: number,
  from: Uint32Array,
  to: Uint32Array,
  count: number,
): { start: Uint32Array; list: Uint32Array } {
  const start = new Uint32Array(n + 1);
  for (let e = 0; e < count; e++) start[from[e]! + 1]!++;
  for (let i = 0; i < n; i++) start[i + 1]! += start[i]!;
  const fill = start.slice(0, n);
  const list = new Uint32Array(count);
  for (let e = 0; e < count; e++) list[fill[from[e]!]!++] = to[e]!;
  return { start, list };
}

/** Size in bytes of a Value as JSON, or what is wrong with it (see jsonValueOf). */
function jsonSize(v: Value): number | string {
  const result = jsonValueOf(v);
  return "json" in result ? Buffer.byteLength(JSON.stringify(result.json), "utf8") : result.problem;
}

/**
 * Finds one cycle among tasks, following edges from parent to child (children
 * of task i: `list[start[i] .. start[i + 1]]`), by an
 * iterative three-color DFS. Returns the task indexes of the cycle, starting
 * and ending at the same task (its lowest index), or undefined.
 */
function findCycle(start: Uint32Array, list: Uint32Array): number[] | undefined {
  const n = start.length - 1;
  const color = new Uint8Array(n); // 0 white, 1 on the stack, 2 done
  const stackNode: number[] = [];
  const stackEdge: number[] = [];
  for (let first = 0; first < n; first++) {
    if (color[first] !== 0) continue;
    color[first] = 1;
    stackNode.push(first);
    stackEdge.push(start[first]!);
    while (stackNode.length > 0) {
      const top = stackNode.length - 1;
      const node = stackNode[top]!;
      const e = stackEdge[top]!;
      if (e === start[node + 1]!) {
        color[node] = 2;
        stackNode.pop();
        stackEdge.pop();
        continue;
      }
      stackEdge[top] = e + 1;
      const next = list[e]!;
      if (color[next] === 0) {
        color[next] = 1;
        stackNode.push(next);
        stackEdge.push(start[next]!);
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
  if (def.defaultCircuitBreaker !== undefined)
    out.push(...circuitBreakerProblems("definition.default_circuit_breaker", def.defaultCircuitBreaker));
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
  const n = tasks.length;
  const indexOf = new Map<string, number>();
  let edgeCount = 0;
  for (let i = 0; i < n; i++) {
    const t = tasks[i]!;
    edgeCount += t.dependsOn.length;
    const idProblem = identProblem("id", t.id);
    if (idProblem !== undefined) {
      out.push({ field: `${taskPath(i)}.id`, description: idProblem });
      continue;
    }
    const first = indexOf.get(t.id);
    if (first !== undefined) {
      out.push({
        field: `${taskPath(i)}.id`,
        description: `id ${JSON.stringify(t.id)} is already used by definition.tasks[${first}]`,
      });
    } else {
      indexOf.set(t.id, i);
    }
  }

  // Edges parent → child, as two parallel arrays; `seenBy[p] === i` once task i listed parent p.
  const edgeParent = new Uint32Array(edgeCount);
  const edgeChild = new Uint32Array(edgeCount);
  let edges = 0;
  const seenBy = new Int32Array(n).fill(-1);
  for (let i = 0; i < n; i++) {
    const t = tasks[i]!;
    if (t.handler === "") out.push({ field: `${taskPath(i)}.handler`, description: "handler is required" });
    if (t.queue !== "") {
      const problem = identProblem("queue", t.queue);
      if (problem !== undefined) out.push({ field: `${taskPath(i)}.queue`, description: problem });
    }
    const deps = t.dependsOn;
    for (let k = 0; k < deps.length; k++) {
      const dep = deps[k]!;
      const parent = indexOf.get(dep);
      if (dep === t.id && t.id !== "") {
        out.push({
          field: `${taskPath(i)}.depends_on[${k}]`,
          description: `task ${JSON.stringify(t.id)} depends on itself`,
        });
      } else if (parent === undefined) {
        out.push({
          field: `${taskPath(i)}.depends_on[${k}]`,
          description: `depends_on names unknown task ${JSON.stringify(dep)}`,
        });
      } else if (seenBy[parent] === i) {
        out.push({
          field: `${taskPath(i)}.depends_on[${k}]`,
          description: `depends_on lists ${JSON.stringify(dep)} twice`,
        });
      } else {
        seenBy[parent] = i;
        edgeParent[edges] = parent;
        edgeChild[edges] = i;
        edges++;
      }
    }
    if (t.input !== undefined) {
      const size = jsonSize(t.input);
      if (typeof size === "string") {
        out.push({ field: `${taskPath(i)}.input`, description: size });
      } else if (size > limits.maxPayloadBytes) {
        out.push({
          field: `${taskPath(i)}.input`,
          description: `input is ${size} bytes as JSON, over the limit of ${limits.maxPayloadBytes}`,
        });
      }
    }
    if (t.retry !== undefined) checkRetry(`${taskPath(i)}.retry`, t.retry, out);
    if (t.timeouts !== undefined) checkTimeouts(`${taskPath(i)}.timeouts`, t.timeouts, out);
    if (t.rateLimitKey !== "") {
      const problem = rateLimitKeyProblem(t.rateLimitKey);
      if (problem !== undefined) out.push({ field: `${taskPath(i)}.rate_limit_key`, description: problem });
    }
  }

  // Self-dependencies are reported above and left out of the edges.
  const children = adjacency(n, edgeParent, edgeChild, edges);
  const cycle = findCycle(children.start, children.list);
  if (cycle !== undefined) {
    out.push({
      field: "definition.tasks",
      description: `cycle: ${cycle.map((i) => tasks[i]!.id).join(" -> ")}`,
    });
  }
  return out;
}

function timeoutMs(d: Duration | undefined, fallback: number): number {
  return d === undefined ? fallback : durationToMs(d);
}

/**
 * Compiles a definition that {@link validateWorkflow} accepted: resolves every
 * task's settings (task → workflow default → daemon default), shares the
 * settings of tasks that have the same, and builds the graph's edges in both
 * directions. Throws on a definition with an unknown dependency or a cycle.
 */
export function compileWorkflow(def: WorkflowDefinition, defaults: CompileDefaults): CompiledWorkflow {
  const tasks = def.tasks;
  const n = tasks.length;
  const ids = new Array<string>(n);
  const indexOf = new Map<string, number>();
  let edgeCount = 0;
  for (let i = 0; i < n; i++) {
    const t = tasks[i]!;
    ids[i] = t.id;
    if (!indexOf.has(t.id)) indexOf.set(t.id, i);
    edgeCount += t.dependsOn.length;
  }

  // Parents in depends_on order, each once; `seenBy[p] === i` once task i listed parent p.
  const parentStart = new Uint32Array(n + 1);
  let parentList = new Uint32Array(edgeCount);
  const childOf = new Uint32Array(edgeCount);
  const seenBy = new Int32Array(n).fill(-1);
  let edges = 0;
  for (let i = 0; i < n; i++) {
    const t = tasks[i]!;
    for (const dep of t.dependsOn) {
      const p = indexOf.get(dep);
      if (p === undefined) throw new Error(`task "${t.id}" depends on unknown task "${dep}"`);
      if (seenBy[p] === i) continue;
      seenBy[p] = i;
      parentList[edges] = p;
      childOf[edges] = i;
      edges++;
    }
    parentStart[i + 1] = edges;
  }
  if (edges < edgeCount) parentList = parentList.slice(0, edges);
  // Children in definition order: the edges are listed by increasing child.
  const children = adjacency(n, parentList, childOf, edges);
  if (levelsOf(parentStart, children.start, children.list) === undefined) {
    throw new Error(`workflow "${def.name}" has a cycle`);
  }

  const workflowRetry = resolveRetryPolicy(undefined, def.defaultRetry, defaults.retry);
  const wt = def.defaultTimeouts;
  const workflowTimeouts = {
    heartbeat: timeoutMs(wt?.heartbeat, defaults.heartbeatTimeoutMs),
    startToClose: timeoutMs(wt?.startToClose, 0),
    scheduleToStart: timeoutMs(wt?.scheduleToStart, 0),
  };
  const settings: TaskSettings[] = [];
  const shared = new Map<string, number>();
  const settingsOf = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const t = tasks[i]!;
    const tt = t.timeouts;
    const s: TaskSettings = {
      handler: t.handler,
      queue: t.queue === "" ? DEFAULT_QUEUE : t.queue,
      input: t.input === undefined ? undefined : toJson(ValueSchema, t.input),
      // Tasks without their own policy share the workflow's resolved one.
      retry:
        t.retry === undefined ? workflowRetry : resolveRetryPolicy(t.retry, def.defaultRetry, defaults.retry),
      heartbeatTimeoutMs: timeoutMs(tt?.heartbeat, workflowTimeouts.heartbeat),
      startToCloseMs: timeoutMs(tt?.startToClose, workflowTimeouts.startToClose),
      scheduleToStartMs: timeoutMs(tt?.scheduleToStart, workflowTimeouts.scheduleToStart),
      rateLimitKey: t.rateLimitKey,
    };
    if (s.input !== undefined || s.retry !== workflowRetry) {
      settingsOf[i] = settings.push(s) - 1;
      continue;
    }
    const key = `${s.handler}\n${s.queue}\n${s.rateLimitKey}\n${s.heartbeatTimeoutMs}\n${s.startToCloseMs}\n${s.scheduleToStartMs}`;
    let at = shared.get(key);
    if (at === undefined) {
      at = settings.push(s) - 1;
      shared.set(key, at);
    }
    settingsOf[i] = at;
  }

  return new CompiledWorkflow({
    name: def.name,
    runTimeoutMs: def.runTimeout === undefined ? 0 : durationToMs(def.runTimeout),
    continueOnFailure: def.continueOnFailure,
    ids,
    indexOf,
    parentStart,
    parentList,
    childStart: children.start,
    childList: children.list,
    settingsOf,
    settings,
  });
}

/** The ExecutionPlan message of a compiled workflow. */
export function planOf(compiled: CompiledWorkflow): ExecutionPlan {
  return create(ExecutionPlanSchema, { layers: compiled.layers().map((taskIds) => ({ taskIds })) });
}
