import type { Queue } from "bullmq";
import type { WorkerChild } from "./children.js";
import { inParallel, value, type WorkflowClient } from "./clients.js";

/** The outcome of one throughput measurement. */
export interface LoadResult {
  tasks: number;
  /** First trigger (or addBulk) to the last acknowledged completion. */
  elapsedMs: number;
  /** Tasks per second over `elapsedMs`. */
  tasksPerSecond: number;
  /** How long submitting the work took (all Trigger calls, or all addBulk calls). */
  submitMs: number;
}

const DONE_TIMEOUT_MS = 600_000;

/**
 * Times one measurement: arms the worker child for `n` completions, submits the work, and waits until
 * the child acknowledged them all.
 */
async function measured(worker: WorkerChild, n: number, submit: () => Promise<unknown>): Promise<LoadResult> {
  const { done } = await worker.expect(n, DONE_TIMEOUT_MS);
  const t0 = Date.now();
  await submit();
  const submitted = Date.now();
  const { last } = await done;
  const elapsedMs = last - t0;
  return { tasks: n, elapsedMs, tasksPerSecond: (n / elapsedMs) * 1000, submitMs: submitted - t0 };
}

/**
 * Starts `n` runs of a one-task workflow with `concurrency` Trigger calls in flight, spread round-robin
 * over `clients`, and waits until the worker child acknowledged `n` completions.
 */
export async function runIndependent(
  clients: WorkflowClient[],
  workflow: string,
  n: number,
  concurrency: number,
  worker: WorkerChild,
): Promise<LoadResult> {
  return measured(worker, n, async () => {
    await inParallel(n, concurrency, async (i) => {
      const client = clients[i % clients.length] as WorkflowClient;
      await client.trigger({ workflow, input: value(i) });
    });
  });
}

/** Starts `n` runs of `workflow` with BatchTrigger calls of `batch` runs, one call after the other. */
export async function runBatched(
  client: WorkflowClient,
  workflow: string,
  n: number,
  batch: number,
  worker: WorkerChild,
): Promise<LoadResult> {
  return measured(worker, n, async () => {
    for (let start = 0; start < n; start += batch) {
      const count = Math.min(batch, n - start);
      await client.batchTrigger({
        requests: Array.from({ length: count }, (_, j) => ({ workflow, input: value(start + j) })),
      });
    }
  });
}

/** Starts one run of a workflow of `n` parallel tasks and waits for its `n` completions. */
export async function runOneWorkflow(
  client: WorkflowClient,
  workflow: string,
  n: number,
  worker: WorkerChild,
): Promise<LoadResult> {
  return measured(worker, n, async () => {
    await client.trigger({ workflow });
  });
}

/** Job options of the raw BullMQ ceiling: the same retention as Weft's own jobs. */
const RAW_JOB_OPTS = {
  removeOnComplete: { age: 3600, count: 10_000 },
  removeOnFail: { age: 24 * 3600, count: 10_000 },
};

/** Adds `n` no-op jobs with addBulk (chunks of 1,000) and waits for the raw worker's `n` completions. */
export async function runBullmq(
  queue: Queue,
  n: number,
  worker: WorkerChild,
  tag: string,
): Promise<LoadResult> {
  return measured(worker, n, async () => {
    for (let start = 0; start < n; start += 1000) {
      const count = Math.min(1000, n - start);
      await queue.addBulk(
        Array.from({ length: count }, (_, j) => ({
          name: "noop",
          data: { r: tag, t: start + j },
          opts: RAW_JOB_OPTS,
        })),
      );
    }
  });
}

/**
 * Adds `n` no-op jobs one `Queue.add` each, `concurrency` in flight (as a service would enqueue its
 * own work, one call per job), and waits for the raw worker's `n` completions: the raw counterpart of
 * a Trigger call per run.
 */
export async function runBullmqAdds(
  queue: Queue,
  n: number,
  concurrency: number,
  worker: WorkerChild,
  tag: string,
): Promise<LoadResult> {
  return measured(worker, n, async () => {
    await inParallel(n, concurrency, async (i) => {
      await queue.add("noop", { r: tag, t: i }, RAW_JOB_OPTS);
    });
  });
}
