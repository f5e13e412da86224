import type { DurationInput } from "./duration.js";
import type { WorkflowDefinition } from "./gen/weft/v1/workflow_pb.js";
import {
  type RetrySpec,
  type TaskOptions,
  type TaskSpec,
  type TimeoutsSpec,
  toWorkflowDefinition,
  type WorkflowSpec,
} from "./workflow-spec.js";

/** The workflow-wide options of {@link workflow}. */
export interface WorkflowOptions {
  /** Free-form description shown by tools. */
  description?: string;
  /** Retry policy for every task that sets none. */
  defaultRetry?: RetrySpec;
  /** Timeouts for every task that sets none. */
  defaultTimeouts?: TimeoutsSpec;
  /** Wall-clock limit of a whole run. */
  runTimeout?: DurationInput;
  /**
   * Keep independent branches running after a task fails for good.
   * @defaultValue false
   */
  continueOnFailure?: boolean;
}

/**
 * The id a new task may take: any id not used yet. Reusing one turns the expected type into an
 * error message. (When ids are plain `string`s the check is left to run time.)
 */
export type NewTaskId<Id extends string, Ids extends string> = string extends Ids
  ? Id
  : [Id] extends [Ids]
    ? `duplicate task id "${Id}"`
    : Id;

/**
 * Builds a workflow definition task by task. `dependsOn` may only name tasks added before, and a
 * task id may not be used twice: both are checked by the compiler (and again at run time).
 *
 * @example
 * const etl = workflow("etl")
 *   .task("extract", { queue: "ts" })
 *   .task("transform", { queue: "py", dependsOn: ["extract"] })
 *   .task("load", { queue: "ts", dependsOn: ["transform"] });
 * await client.submitWorkflow(etl);
 */
export class WorkflowBuilder<Ids extends string = never> {
  readonly #spec: WorkflowSpec;

  /** Use {@link workflow} to start a builder. */
  constructor(spec: WorkflowSpec) {
    this.#spec = spec;
  }

  /** Name of the workflow. */
  get name(): string {
    return this.#spec.name;
  }

  /**
   * Adds a task; returns a new builder that knows its id.
   * @throws TypeError when the id is already used or `dependsOn` names a task not added before.
   */
  task<const Id extends string>(
    id: NewTaskId<Id, Ids>,
    options: TaskOptions<Ids> = {},
  ): WorkflowBuilder<Ids | Id> {
    const known = new Set(this.#spec.tasks.map((t) => t.id));
    if (known.has(id)) throw new TypeError(`workflow "${this.name}": duplicate task id "${id}"`);
    for (const parent of options.dependsOn ?? []) {
      if (!known.has(parent)) {
        throw new TypeError(
          `workflow "${this.name}": task "${id}" depends on "${parent}", which is not defined before it`,
        );
      }
    }
    const task: TaskSpec = { ...options, id };
    return new WorkflowBuilder<Ids | Id>({ ...this.#spec, tasks: [...this.#spec.tasks, task] });
  }

  /** The workflow as a plain {@link WorkflowSpec} (the shape of a workflow file). */
  toSpec(): WorkflowSpec {
    return this.#spec;
  }

  /** The weft.v1.WorkflowDefinition message to submit. */
  build(): WorkflowDefinition {
    return toWorkflowDefinition(this.#spec);
  }
}

/** Starts a {@link WorkflowBuilder} for the workflow `name`. */
export function workflow(name: string, options: WorkflowOptions = {}): WorkflowBuilder {
  return new WorkflowBuilder({ ...options, name, tasks: [] });
}
