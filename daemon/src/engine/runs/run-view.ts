import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  EventType,
  type Run,
  type RunEvent,
  RunEventSchema,
  RunSchema,
  RunStatus,
  TaskErrorSchema,
  type TaskRun,
  TaskRunSchema,
  TaskStatus,
} from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { CompiledWorkflow } from "../definitions/index.js";
import { payloadBytes } from "../shared/index.js";

/** A run event as stored in the run's event list. */
export interface StoredEvent {
  sequence: number;
  fields: Record<string, string>;
}

/** A task record as stored in a run's tasks hash (see run-scripts.ts). */
export interface TaskRecord {
  s: string;
  a: number;
  w?: string;
  l?: string;
  k?: string;
  le?: number;
  sc?: number;
  qt?: number;
  st?: number;
  ft?: number;
  na?: number;
  wr?: string;
  e?: { t: string; m: string; d: string };
  pg?: string;
}

const TASK_STATUS: Record<string, TaskStatus> = {
  P: TaskStatus.PENDING,
  Q: TaskStatus.QUEUED,
  R: TaskStatus.RUNNING,
  T: TaskStatus.RETRYING,
  S: TaskStatus.SUCCEEDED,
  F: TaskStatus.FAILED,
  C: TaskStatus.CANCELLED,
  K: TaskStatus.SKIPPED,
};

const RUN_STATUS: Record<string, RunStatus> = {
  R: RunStatus.RUNNING,
  S: RunStatus.SUCCEEDED,
  F: RunStatus.FAILED,
  C: RunStatus.CANCELLED,
  X: RunStatus.TIMED_OUT,
};

/** A run's status from the code stored in its hash (UNSPECIFIED for none). */
export function runStatusOf(code: string | null | undefined): RunStatus {
  return RUN_STATUS[code ?? ""] ?? RunStatus.UNSPECIFIED;
}

/** Run status codes as stored, by proto status. */
export const RUN_STATUS_CODE = new Map<RunStatus, string>(
  Object.entries(RUN_STATUS).map(([code, status]) => [status, code]),
);

/** Whether a stored run status is final. */
export function isFinalRunStatus(code: string | null | undefined): boolean {
  return code !== undefined && code !== null && code !== "R";
}

/** Parses stored JSON text into a google.protobuf.Value. */
export function jsonValue(
  text: string | undefined | null,
): ReturnType<typeof create<typeof ValueSchema>> | undefined {
  if (text === undefined || text === null || text === "") return undefined;
  return fromJson(ValueSchema, JSON.parse(text) as JsonValue);
}

function time(ms: number | string | undefined) {
  const n = Number(ms);
  return ms === undefined || ms === "" || !Number.isFinite(n) || n <= 0 ? undefined : timestampFromMs(n);
}

/**
 * Builds a Run from its hash, and its task runs when a workflow and the run's tasks hash (records by
 * task id, outputs under `o:<id>`) are given.
 */
export function runFromHash(
  h: Record<string, string>,
  tasks?: { compiled: CompiledWorkflow; hash: Record<string, string> },
): Run {
  return create(RunSchema, {
    id: h.id ?? "",
    workflow: h.wf ?? "",
    workflowVersion: Number(h.v ?? 0),
    status: runStatusOf(h.s),
    input: jsonValue(h.in),
    output: jsonValue(h.out),
    createTime: time(h.ct),
    finishTime: time(h.ft),
    idempotencyKey: h.idem ?? "",
    error: h.err ?? "",
    lastSequence: BigInt(h.seq ?? 0),
    resumeCount: Number(h.gen ?? 0),
    scheduleId: h.sc ?? "",
    fireTime: time(h.sft),
    tasks:
      tasks === undefined
        ? []
        : tasks.compiled.tasks.map((task) => {
            const raw = tasks.hash[task.id];
            const record: TaskRecord = raw === undefined ? { s: "P", a: 0 } : (JSON.parse(raw) as TaskRecord);
            return taskRunOf(
              task.id,
              task.queue,
              task.handler,
              task.retry.maxAttempts,
              record,
              tasks.hash[`o:${task.id}`],
            );
          }),
  });
}

/** A task run from its record (and its output's JSON text, when it is to be included). */
export function taskRunOf(
  taskId: string,
  queue: string,
  handler: string,
  maxAttempts: number,
  r: TaskRecord,
  output: string | undefined,
): TaskRun {
  return create(TaskRunSchema, {
    taskId,
    status: TASK_STATUS[r.s] ?? TaskStatus.UNSPECIFIED,
    attempt: r.a,
    maxAttempts,
    workerId: r.w ?? "",
    queue,
    handler,
    queueTime: time(r.qt),
    startTime: time(r.st),
    finishTime: time(r.ft),
    output: jsonValue(output),
    error:
      r.e === undefined
        ? undefined
        : create(TaskErrorSchema, { type: r.e.t, message: r.e.m, details: r.e.d }),
    nextAttemptTime: r.s === "T" ? time(r.na) : undefined,
    waitingReason: r.wr ?? "",
    progress: r.s === "R" ? jsonValue(r.pg) : undefined,
  });
}

/**
 * Builds a RunEvent from a stream entry. An output that would take more than `maxOutputBytes` in
 * the event (as JSON or encoded) is left out and named in omitted_fields.
 */
export function eventFromStored(runId: string, e: StoredEvent, maxOutputBytes: number): RunEvent {
  const f = e.fields;
  let output: RunEvent["output"];
  let outputBytes = 0;
  const omittedFields: string[] = [];
  if (f.o !== undefined && f.o !== "") {
    outputBytes = Buffer.byteLength(f.o);
    if (payloadBytes(f.o, maxOutputBytes) <= maxOutputBytes) output = jsonValue(f.o);
    else omittedFields.push("output");
  } else if (f.oz !== undefined) {
    // A run output over the limit was never built: its leaves' outputs are in their task runs.
    outputBytes = Number(f.oz);
    omittedFields.push("output");
  }
  let error: RunEvent["error"];
  if (f.e !== undefined && f.e !== "") {
    const parsed = JSON.parse(f.e) as { t: string; m: string; d: string };
    error = create(TaskErrorSchema, { type: parsed.t, message: parsed.m, details: parsed.d });
  }
  return create(RunEventSchema, {
    sequence: BigInt(e.sequence),
    runId,
    type: Number(f.ty ?? 0) as EventType,
    time: time(f.ts),
    taskId: f.tk ?? "",
    attempt: Number(f.a ?? 0),
    runStatus: runStatusOf(f.rs),
    output,
    error,
    workerId: f.w ?? "",
    nextAttemptTime: time(f.na),
    message: f.m ?? "",
    outputBytes: BigInt(outputBytes),
    omittedFields,
  });
}

/** Whether an event is the last one of its run. */
export function isFinalEvent(e: StoredEvent): boolean {
  return Number(e.fields.ty) === EventType.RUN_FINISHED;
}
