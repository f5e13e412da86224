import type { JsonValue } from "@bufbuild/protobuf";
import type { ResolvedRetryPolicy } from "./retry-policy.js";

/** What a task runs with; tasks of a workflow with the same settings share one object. */
export interface TaskSettings {
  readonly handler: string;
  /** Task queue; "default" when the definition leaves it empty. */
  readonly queue: string;
  /** Static input as a plain JSON value, or undefined when unset. */
  readonly input: JsonValue | undefined;
  readonly retry: ResolvedRetryPolicy;
  readonly heartbeatTimeoutMs: number;
  /** 0: no limit. */
  readonly startToCloseMs: number;
  /** 0: no limit. */
  readonly scheduleToStartMs: number;
  /** Literal or template over the run input; "" when the task has no key. */
  readonly rateLimitKey: string;
}

/** One task of a compiled workflow, with every setting resolved. */
export interface CompiledTask extends TaskSettings {
  readonly id: string;
  /** Position in the definition. */
  readonly index: number;
  /** Ids of the tasks this one depends on, in depends_on order (a new array on each read). */
  readonly parents: string[];
  /** Ids of the tasks that depend on this one, in definition order (a new array on each read). */
  readonly children: string[];
}

/** Looks tasks up by id. */
export interface TaskLookup {
  get(id: string): CompiledTask | undefined;
}

/** The arrays a compiled workflow is made of (see {@link CompiledWorkflow}). */
export interface WorkflowGraph {
  name: string;
  runTimeoutMs: number;
  continueOnFailure: boolean;
  /** Task ids in definition order. */
  ids: string[];
  /** Task id → position. */
  indexOf: Map<string, number>;
  /** Parents of task i: `parentList[parentStart[i] .. parentStart[i + 1]]` (task positions). */
  parentStart: Uint32Array;
  parentList: Uint32Array;
  /** Children of task i: `childList[childStart[i] .. childStart[i + 1]]`, in definition order. */
  childStart: Uint32Array;
  childList: Uint32Array;
  /** Task i runs with `settings[settingsOf[i]]`. */
  settingsOf: Uint32Array;
  settings: TaskSettings[];
}

/**
 * A validated definition turned into the graph the engine runs, kept compact:
 * ids, an id index, edges as offsets into typed arrays, and the settings the
 * tasks share, about 100 bytes per task. {@link CompiledTask} objects are made
 * on demand (`byId.get`, `task`), so a workflow of 100,000 tasks costs about
 * 10 MiB in memory rather than an object graph ten times as large.
 */
export class CompiledWorkflow {
  readonly name: string;
  /** Wall-clock limit of a run; 0: none. */
  readonly runTimeoutMs: number;
  readonly continueOnFailure: boolean;
  /** Tasks without parents, in definition order. */
  readonly roots: string[];
  /** Tasks without children, in definition order. */
  readonly leaves: string[];
  /** Tasks by id. */
  readonly byId: TaskLookup;
  private readonly graph: WorkflowGraph;

  constructor(graph: WorkflowGraph) {
    this.graph = graph;
    this.name = graph.name;
    this.runTimeoutMs = graph.runTimeoutMs;
    this.continueOnFailure = graph.continueOnFailure;
    const { ids, parentStart, childStart } = graph;
    this.roots = ids.filter((_, i) => parentStart[i] === parentStart[i + 1]);
    this.leaves = ids.filter((_, i) => childStart[i] === childStart[i + 1]);
    this.byId = {
      get: (id) => {
        const index = graph.indexOf.get(id);
        return index === undefined ? undefined : this.task(index);
      },
    };
  }

  /** Number of tasks. */
  get size(): number {
    return this.graph.ids.length;
  }

  /** Every task in definition order, made anew on each read: for whole-run views, not hot paths. */
  get tasks(): CompiledTask[] {
    return this.graph.ids.map((_, i) => this.task(i));
  }

  /** The task at a position of the definition. */
  task(index: number): CompiledTask {
    return new TaskView(this, index, this.graph.settings[this.graph.settingsOf[index]!]!);
  }

  /** The id of the task at a position. */
  idAt(index: number): string {
    return this.graph.ids[index]!;
  }

  /** How many parents the task at a position has. */
  parentCount(index: number): number {
    return this.graph.parentStart[index + 1]! - this.graph.parentStart[index]!;
  }

  /** Parent ids of the task at a position, in depends_on order. */
  parentsOf(index: number): string[] {
    const { parentStart, parentList } = this.graph;
    return this.idsOf(parentList, parentStart[index]!, parentStart[index + 1]!);
  }

  /** Child ids of the task at a position, in definition order. */
  childrenOf(index: number): string[] {
    const { childStart, childList } = this.graph;
    return this.idsOf(childList, childStart[index]!, childStart[index + 1]!);
  }

  /** Positions of the parents of the task at a position (a view on the graph: do not modify). */
  parentIndexes(index: number): Uint32Array {
    const { parentStart, parentList } = this.graph;
    return parentList.subarray(parentStart[index]!, parentStart[index + 1]!);
  }

  /** Positions of the children of the task at a position (a view on the graph: do not modify). */
  childIndexes(index: number): Uint32Array {
    const { childStart, childList } = this.graph;
    return childList.subarray(childStart[index]!, childStart[index + 1]!);
  }

  /** Kahn layers: every task of layer k depends only on earlier layers; each in definition order. */
  layers(): string[][] {
    const { ids } = this.graph;
    const level = levelsOf(this.graph.parentStart, this.graph.childStart, this.graph.childList);
    if (level === undefined) throw new Error(`workflow "${this.name}" has a cycle`);
    const layers: string[][] = [];
    for (let i = 0; i < ids.length; i++) {
      const l = level[i]!;
      while (layers.length <= l) layers.push([]);
      layers[l]!.push(ids[i]!);
    }
    return layers;
  }

  private idsOf(list: Uint32Array, from: number, to: number): string[] {
    const { ids } = this.graph;
    const out = new Array<string>(to - from);
    for (let e = from; e < to; e++) out[e - from] = ids[list[e]!]!;
    return out;
  }
}

/**
 * The layer of every node of a graph (one past its deepest parent's), by
 * Kahn's algorithm over its edges in both directions (see {@link WorkflowGraph});
 * undefined when the graph has a cycle.
 */
export function levelsOf(
  parentStart: Uint32Array,
  childStart: Uint32Array,
  childList: Uint32Array,
): Uint32Array | undefined {
  const n = parentStart.length - 1;
  const level = new Uint32Array(n);
  const pending = new Uint32Array(n);
  const order = new Uint32Array(n);
  let tail = 0;
  for (let i = 0; i < n; i++) {
    pending[i] = parentStart[i + 1]! - parentStart[i]!;
    if (pending[i] === 0) order[tail++] = i;
  }
  for (let head = 0; head < tail; head++) {
    const i = order[head]!;
    const next = level[i]! + 1;
    for (let e = childStart[i]!; e < childStart[i + 1]!; e++) {
      const c = childList[e]!;
      if (next > level[c]!) level[c] = next;
      pending[c]!--;
      if (pending[c] === 0) order[tail++] = c;
    }
  }
  return tail === n ? level : undefined;
}

/** A task of a {@link CompiledWorkflow}, read through to its arrays (private fields: never serialised). */
class TaskView implements CompiledTask {
  readonly #workflow: CompiledWorkflow;
  readonly #settings: TaskSettings;

  constructor(
    workflow: CompiledWorkflow,
    readonly index: number,
    settings: TaskSettings,
  ) {
    this.#workflow = workflow;
    this.#settings = settings;
  }

  get id(): string {
    return this.#workflow.idAt(this.index);
  }
  get parents(): string[] {
    return this.#workflow.parentsOf(this.index);
  }
  get children(): string[] {
    return this.#workflow.childrenOf(this.index);
  }
  get handler(): string {
    return this.#settings.handler;
  }
  get queue(): string {
    return this.#settings.queue;
  }
  get input(): JsonValue | undefined {
    return this.#settings.input;
  }
  get retry(): ResolvedRetryPolicy {
    return this.#settings.retry;
  }
  get heartbeatTimeoutMs(): number {
    return this.#settings.heartbeatTimeoutMs;
  }
  get startToCloseMs(): number {
    return this.#settings.startToCloseMs;
  }
  get scheduleToStartMs(): number {
    return this.#settings.scheduleToStartMs;
  }
  get rateLimitKey(): string {
    return this.#settings.rateLimitKey;
  }
}
