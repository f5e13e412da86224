import type { Job } from "bullmq";

/** What a BullMQ job of Weft carries: just enough to find its run and workflow. */
export interface TaskJobData {
  /** Run id. */
  r: string;
  /** Task id. */
  t: string;
  /** Workflow name. */
  w: string;
  /** Workflow version. */
  v: number;
}

/** A task to enqueue. */
export interface TaskJobSpec {
  runId: string;
  taskId: string;
  workflow: string;
  version: number;
  queue: string;
  handler: string;
  maxAttempts: number;
  /** Delay before the job may start (a retry's backoff), in ms. */
  delayMs?: number;
}

/** A job fetched and locked for a poll; `token` is its BullMQ lock token. */
export interface FetchedJob {
  job: Job<TaskJobData>;
  token: string;
}
