import type { RedisClient } from "../../redis/redis.js";
import type { LoadedWorkflow, WorkflowStore } from "../definitions/index.js";
import { type Keys, LruCache } from "../shared/index.js";

/** Runs whose workflow version is remembered, at most. */
const REMEMBERED_RUNS = 50_000;

/**
 * Which workflow version each run executes. A run never changes version, so the answer is kept
 * for the runs this replica saw recently, and read from the run's hash for the others.
 */
export class RunWorkflows {
  private readonly refs = new LruCache<string, { workflow: string; version: number }>({
    maxEntries: REMEMBERED_RUNS,
  });

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly workflows: WorkflowStore,
  ) {}

  /** The workflow version a run executes; undefined when the run does not exist. */
  async of(runId: string): Promise<LoadedWorkflow | undefined> {
    const ref = this.refs.get(runId);
    if (ref !== undefined) return this.workflows.get(ref.workflow, ref.version);
    const [workflow, version] = await this.redis.hmget(this.keys.run(runId).run, "wf", "v");
    if (workflow === null || workflow === undefined || version === null || version === undefined)
      return undefined;
    this.remember(runId, workflow, Number(version));
    return this.workflows.get(workflow, Number(version));
  }

  /** Records which workflow version a run executes. */
  remember(runId: string, workflow: string, version: number): void {
    this.refs.set(runId, { workflow, version });
  }
}
