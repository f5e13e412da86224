import type { Value } from "@bufbuild/protobuf/wkt";
import { type Run, type TaskRun, TaskStatus } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { RedisClient } from "../../redis/redis.js";
import type { CompiledWorkflow } from "../definitions/index.js";
import {
  type AnswerRoom,
  anySlotPipeline,
  type Keys,
  measuredValue,
  textSize,
  type WantedPayload,
} from "../shared/index.js";
import { runFromHash, type TaskRecord, taskRunOf } from "./run-view.js";

/** The fields of a run's hash every answer reads; its payloads (in, out, err) are read only when they fit. */
const HEAD_FIELDS = ["id", "wf", "v", "s", "ct", "ft", "idem", "seq", "oz", "gen", "sc", "sft"] as const;

/** A run's small fields, and the stored sizes of its input, output and error. */
export interface RunHead {
  h: Record<string, string>;
  inBytes: number;
  outBytes: number;
  errBytes: number;
}

/**
 * Records up to this size come whole in a page of task runs; a larger one (a long error or
 * progress) comes without its error's message and details and its progress, which are then read
 * only if they fit.
 */
const RECORD_CAP = 2048;

/**
 * Reads task records for a page of task runs. KEYS[1]: the tasks hash. ARGV: cap, then task ids.
 * Returns, per task: its record ('' when it has none) — over cap, without e.m, e.d and pg, and with
 * x naming what was taken out ('e', 'p') —, its output's size and its record's size.
 */
const TASK_VIEW = `
local cap = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local size = redis.call('HSTRLEN', KEYS[1], id)
  local rec = ''
  if size > 0 then
    rec = redis.call('HGET', KEYS[1], id)
    if size > cap then
      local t = cjson.decode(rec)
      local x = ''
      if t.e then t.e.m = nil; t.e.d = nil; x = 'e' end
      if t.pg then t.pg = nil; x = x .. 'p' end
      t.x = x
      rec = cjson.encode(t)
    end
  end
  out[#out + 1] = rec
  out[#out + 1] = redis.call('HSTRLEN', KEYS[1], 'o:' .. id)
  out[#out + 1] = size
end
return out
`;

/** Reads the heads of runs in one round trip; undefined for a run that does not exist. */
export async function readHeads(
  redis: RedisClient,
  keys: Keys,
  runIds: readonly string[],
): Promise<(RunHead | undefined)[]> {
  if (runIds.length === 0) return [];
  const pipeline = anySlotPipeline(redis);
  for (const id of runIds) {
    const key = keys.run(id).run;
    pipeline
      .hmget(key, ...HEAD_FIELDS)
      .hstrlen(key, "in")
      .hstrlen(key, "out")
      .hstrlen(key, "err");
  }
  const rows = (await pipeline.exec()) ?? [];
  for (const [err] of rows) if (err !== null) throw err;
  return runIds.map((_, i) => {
    const values = rows[4 * i]?.[1] as (string | null)[] | undefined;
    if (values === undefined || values[0] === null) return undefined;
    const h: Record<string, string> = {};
    HEAD_FIELDS.forEach((f, j) => {
      const v = values[j];
      if (v !== null && v !== undefined) h[f] = v;
    });
    const size = (k: number) => Number(rows[4 * i + k]?.[1] ?? 0);
    return { h, inBytes: size(1), outBytes: size(2), errBytes: size(3) };
  });
}

/** Bytes a run takes in an answer besides its payloads and task runs: an upper bound. */
function runBound(head: RunHead): number {
  return 220 + textSize(head.h.wf ?? "") + textSize(head.h.idem ?? "") + textSize(head.h.sc ?? "");
}

/** Bytes a run takes in an answer with its payloads, as stored, besides its task runs. */
export function runWholeBytes(head: RunHead): number {
  return runBound(head) + head.inBytes + head.outBytes + head.errBytes + 24;
}

/**
 * A run without its task runs, in an answer with `room`: its small fields, then its input, error
 * and output, each as it fits (asked for from `room`, read by its `read()`); what does not fit is
 * named in omitted_fields. Undefined when even the small fields do not fit.
 */
export function runInRoom(head: RunHead, keys: Keys, room: AnswerRoom): Run | undefined {
  if (!room.take(runBound(head))) return undefined;
  const run = runFromHash(head.h);
  const stored = head.h.oz;
  run.outputBytes = BigInt(stored ?? head.outBytes);
  // A run whose leaves' outputs were over the limit has no stored output.
  if (stored !== undefined) run.omittedFields.push("output");
  const key = keys.run(run.id).run;
  room.want(
    jsonPayload(
      key,
      "in",
      head.inBytes,
      (v) => {
        run.input = v;
      },
      () => run.omittedFields.push("input"),
    ),
  );
  room.want(
    textPayload(
      key,
      "err",
      head.errBytes,
      (t) => {
        run.error = t;
      },
      () => run.omittedFields.push("error"),
    ),
  );
  room.want(
    jsonPayload(
      key,
      "out",
      head.outBytes,
      (v) => {
        run.output = v;
      },
      () => run.omittedFields.push("output"),
    ),
  );
  return run;
}

/**
 * Adds to `run` its task runs from position `from` (at most `count`), as many as fit in `room`,
 * each with its output, error and progress as they fit (asked for from `room`). Returns the
 * position of the first task run that did not fit, or undefined when all did.
 */
export async function taskRunsInRoom(
  redis: RedisClient,
  keys: Keys,
  run: Run,
  compiled: CompiledWorkflow,
  from: number,
  count: number,
  room: AnswerRoom,
): Promise<number | undefined> {
  const end = Math.min(compiled.size, from + count);
  const tasksKey = keys.run(run.id).tasks;
  const view = viewCommand(redis);
  // Records are read in chunks, and no more than the room could take.
  const CHUNK = 1000;
  for (let start = from; start < end; start += CHUNK) {
    const stop = Math.min(end, start + CHUNK);
    const ids: string[] = [];
    for (let i = start; i < stop; i++) ids.push(compiled.idAt(i));
    const cap = count === 1 ? Math.max(RECORD_CAP, room.bytesLeft) : RECORD_CAP;
    const rows = (await view.call(redis, tasksKey, cap, ...ids)) as (string | number)[];
    for (let i = start; i < stop; i++) {
      const j = 3 * (i - start);
      const raw = String(rows[j] ?? "");
      const record: TaskRecord & { x?: string } =
        raw === "" ? { s: "P", a: 0 } : (JSON.parse(raw) as TaskRecord & { x?: string });
      const task = compiled.task(i);
      const taskRun = taskRunOf(task.id, task.queue, task.handler, task.retry.maxAttempts, record, undefined);
      if (!room.take(taskRunBound(taskRun, record))) return i;
      run.tasks.push(taskRun);
      wantTaskPayloads(taskRun, record, tasksKey, Number(rows[j + 1] ?? 0), Number(rows[j + 2] ?? 0), room);
    }
  }
  return undefined;
}

/** Asks `room` for a task run's output, and for its error and progress when its record came without them. */
function wantTaskPayloads(
  taskRun: TaskRun,
  record: TaskRecord & { x?: string },
  tasksKey: string,
  outputBytes: number,
  recordBytes: number,
  room: AnswerRoom,
): void {
  const stripped = record.x ?? "";
  if (stripped !== "") {
    let full: TaskRecord | undefined;
    let progress: Value | undefined;
    room.want({
      key: tasksKey,
      field: taskRun.taskId,
      storedBytes: recordBytes,
      measure: (text) => {
        full = JSON.parse(text) as TaskRecord;
        let bytes = textSize(full.e?.m ?? "") + textSize(full.e?.d ?? "");
        if (full.pg !== undefined && full.s === "R") {
          const measured = measuredValue(full.pg);
          progress = measured.value;
          bytes += measured.bytes;
        }
        return bytes;
      },
      include: () => {
        if (taskRun.error !== undefined && full?.e !== undefined) {
          taskRun.error.message = full.e.m;
          taskRun.error.details = full.e.d;
        }
        if (progress !== undefined) taskRun.progress = progress;
      },
      omit: () => {
        if (stripped.includes("e")) taskRun.omittedFields.push("error");
        if (stripped.includes("p") && record.s === "R") taskRun.omittedFields.push("progress");
      },
    });
  }
  if (outputBytes > 0) {
    taskRun.outputBytes = BigInt(outputBytes);
    room.want(
      jsonPayload(
        tasksKey,
        `o:${taskRun.taskId}`,
        outputBytes,
        (v) => {
          taskRun.output = v;
        },
        () => taskRun.omittedFields.push("output"),
      ),
    );
  }
}

/** Bytes a task run takes in an answer besides its output and what its record came without: an upper bound. */
function taskRunBound(taskRun: TaskRun, record: TaskRecord): number {
  let bytes = 200 + textSize(taskRun.taskId) + textSize(taskRun.workerId) + textSize(taskRun.queue);
  bytes += textSize(taskRun.handler) + textSize(taskRun.waitingReason);
  // A queued task may get its queue's hold reason (paused, rate limited) after this.
  if (taskRun.status === TaskStatus.QUEUED) bytes += 256;
  if (taskRun.error !== undefined) {
    bytes += textSize(taskRun.error.type) + textSize(taskRun.error.message) + textSize(taskRun.error.details);
  }
  if (taskRun.progress !== undefined && record.pg !== undefined) bytes += measuredValue(record.pg).bytes;
  return bytes;
}

function jsonPayload(
  key: string,
  field: string,
  storedBytes: number,
  set: (value: Value) => void,
  omit: () => void,
): WantedPayload {
  let value: Value | undefined;
  return {
    key,
    field,
    storedBytes,
    measure: (text) => {
      const measured = measuredValue(text);
      value = measured.value;
      return measured.bytes;
    },
    include: () => set(value as Value),
    omit,
  };
}

function textPayload(
  key: string,
  field: string,
  storedBytes: number,
  set: (text: string) => void,
  omit: () => void,
): WantedPayload {
  let value = "";
  return {
    key,
    field,
    storedBytes,
    measure: (text) => {
      value = text;
      return textSize(text);
    },
    include: () => set(value),
    omit,
  };
}

type ViewCommand = (key: string, cap: number, ...ids: string[]) => Promise<unknown>;

/**
 * Defines the task view script on a client. Called once when the engine starts, before the client
 * sends anything: a command defined later is missing from the auto-pipeline ioredis has open in
 * that tick, and ioredis then fails the whole pipeline with an exception nothing catches.
 */
export function defineTaskView(redis: RedisClient): void {
  if (!("weftTaskView" in redis)) redis.defineCommand("weftTaskView", { numberOfKeys: 1, lua: TASK_VIEW });
}

function viewCommand(redis: RedisClient): ViewCommand {
  const command = (redis as unknown as { weftTaskView?: ViewCommand }).weftTaskView;
  if (command === undefined) throw new Error("weftTaskView is not defined: call defineTaskView first");
  return command;
}
