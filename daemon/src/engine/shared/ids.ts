import { createHash, randomFillSync, randomUUID } from "node:crypto";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NONCE_RE = /^[A-Za-z0-9_-]{22}$/;
const TASK_ID_RE = /^[A-Za-z0-9_.-]{1,128}$/;

/** A fresh random run id. */
export function newRunId(): string {
  return randomUUID();
}

/**
 * The run id for an idempotency key: a pure function of the workflow and the
 * key, so that concurrent triggers with one key race on one Redis key and the
 * first creates the run, whichever replica serves it.
 */
export function idempotentRunId(workflow: string, key: string): string {
  const hex = createHash("sha256").update(`${workflow}\u0000${key}`).digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Whether a string has the shape of a run id. */
export function isRunId(s: string): boolean {
  return UUID_RE.test(s);
}

/** BullMQ job id of a task: deterministic, so repeating an enqueue never adds a second job. */
export function jobIdOf(runId: string, taskId: string): string {
  return `${runId}.${taskId}`;
}

/** Splits a job id made by {@link jobIdOf}. */
export function parseJobId(jobId: string): { runId: string; taskId: string } | undefined {
  const dot = jobId.indexOf(".");
  if (dot < 0) return undefined;
  const runId = jobId.slice(0, dot);
  const taskId = jobId.slice(dot + 1);
  return isRunId(runId) && TASK_ID_RE.test(taskId) ? { runId, taskId } : undefined;
}

/**
 * The parts of a lease id `<runId>.<attempt>.<nonce>.<taskId>`: which attempt of
 * which task it leases, and the unguessable nonce stored with the task.
 */
export interface LeaseRef {
  runId: string;
  taskId: string;
  attempt: number;
  nonce: string;
}

// Random bytes for nonces, filled 256 nonces at a time (one randomFillSync instead of one per lease);
// every byte is handed out once.
const NONCE_BYTES = 16;
const noncePool = Buffer.alloc(NONCE_BYTES * 256);
let noncePoolAt = noncePool.length;

/** A new lease nonce: 128 random bits. */
export function newLeaseNonce(): string {
  if (noncePoolAt === noncePool.length) {
    randomFillSync(noncePool);
    noncePoolAt = 0;
  }
  const nonce = noncePool.toString("base64url", noncePoolAt, noncePoolAt + NONCE_BYTES);
  noncePoolAt += NONCE_BYTES;
  return nonce;
}

/** Formats a lease id. */
export function formatLeaseId(lease: LeaseRef): string {
  return `${lease.runId}.${lease.attempt}.${lease.nonce}.${lease.taskId}`;
}

/** Parses a lease id, or returns undefined when it is malformed. */
export function parseLeaseId(id: string): LeaseRef | undefined {
  if (id.length > 256) return undefined;
  const [runId, attemptText, nonce, ...rest] = id.split(".");
  const taskId = rest.join(".");
  if (runId === undefined || !isRunId(runId)) return undefined;
  if (attemptText === undefined || !/^[1-9][0-9]{0,5}$/.test(attemptText)) return undefined;
  if (nonce === undefined || !NONCE_RE.test(nonce) || !TASK_ID_RE.test(taskId)) return undefined;
  return { runId, taskId, attempt: Number(attemptText), nonce };
}
