import { randomUUID } from "node:crypto";
import { type JsonValue, toBinary } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Run } from "@weft/sdk/gen/weft/v1/run_pb.js";
import {
  type Schedule,
  ScheduleSchema,
  type ScheduleSpec,
} from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import type { Logger } from "pino";
import type { RedisClient } from "../../redis/redis.js";
import type { WorkflowStore } from "../definitions/index.js";
import type { RunOps } from "../runs/index.js";
import { ANSWER_FRAMING, invalidArgument, type Keys } from "../shared/index.js";
import { ScheduleClock } from "./clock.js";
import type { ClockCache } from "./clock-cache.js";
import { fireKey } from "./schedule-fires.js";
import { checkSpec, type StoredSpec } from "./schedule-spec.js";
import type { ScheduleRecord, ScheduleStore } from "./schedule-store.js";
import { scheduleOf } from "./schedule-view.js";

/** Most fire times one BackfillSchedule call starts. */
export const MAX_BACKFILL = 1000;

/** Runs started per trigger call of a backfill. */
const BACKFILL_CHUNK = 100;

/** What the schedule operations work with. */
export interface ScheduleOpsDeps {
  redis: RedisClient;
  keys: Keys;
  logger: Logger;
  store: ScheduleStore;
  clocks: ClockCache;
  workflows: WorkflowStore;
  runs: RunOps;
  limits: {
    maxPayloadBytes: number;
    runRetentionMs: number;
    /** Largest answer, in bytes (--max-response-bytes): a page of schedules stops before it. */
    maxResponseBytes: number;
  };
}

/** NOT_FOUND for a schedule id. */
function notFound(id: string): ConnectError {
  return new ConnectError(`schedule "${id}" not found`, Code.NotFound);
}

/** Milliseconds of a Timestamp, or NaN when it is malformed. */
function ms(t: Timestamp): number {
  return t.nanos < 0 || t.nanos >= 1_000_000_000
    ? Number.NaN
    : Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6);
}

/**
 * The schedule calls of ScheduleService on top of the store: each checks its input (the spec, and
 * that its workflow exists), changes the schedule, and answers with the schedule as it is now.
 * Ids are checked by the service.
 */
export class ScheduleOps {
  constructor(private readonly deps: ScheduleOpsDeps) {}

  /** Creates a schedule (a random id when `id` is ""); ALREADY_EXISTS when the id is taken. */
  async create(id: string, specMessage: ScheduleSpec | undefined, paused: boolean): Promise<Schedule> {
    const { spec, inputText } = await this.checked(specMessage);
    const scheduleId = id === "" ? randomUUID() : id;
    const now = Date.now();
    const next = this.deps.clocks.of(spec).next(now) as number;
    if (!(await this.deps.store.create(scheduleId, spec, inputText, paused, next, now))) {
      throw new ConnectError(`schedule "${scheduleId}" already exists`, Code.AlreadyExists);
    }
    this.deps.logger.info({ schedule: scheduleId, workflow: spec.workflow }, "schedule created");
    return this.get(scheduleId);
  }

  async get(id: string): Promise<Schedule> {
    const record = await this.deps.store.read(id);
    if (record === undefined) throw notFound(id);
    return this.view(record);
  }

  /**
   * One page of schedules by id, each with its next fire time only (GetSchedule shows five): at most
   * `pageSize`, and fewer when more would not fit in one answer. `next` is the last id of the page
   * when more follow, "" on the last page.
   */
  async list(pageSize: number, after: string): Promise<{ schedules: Schedule[]; next: string }> {
    const ids = await this.deps.store.ids(after, pageSize + 1);
    const page = ids.slice(0, pageSize);
    const records = await this.deps.store.readMany(page);
    const views = await Promise.all(records.map((r) => (r === undefined ? undefined : this.view(r, 1))));
    const schedules: Schedule[] = [];
    let bytes = ANSWER_FRAMING;
    let last = "";
    let cut = false;
    for (const [i, view] of views.entries()) {
      if (view !== undefined) {
        // A schedule's input is at most half the answer limit: the first always fits.
        const size = toBinary(ScheduleSchema, view).length + 6;
        if (schedules.length > 0 && bytes + size > this.deps.limits.maxResponseBytes) {
          cut = true;
          break;
        }
        schedules.push(view);
        bytes += size;
      }
      last = page[i] as string;
    }
    return { schedules, next: cut || ids.length > pageSize ? last : "" };
  }

  async update(id: string, specMessage: ScheduleSpec | undefined): Promise<Schedule> {
    const { spec, inputText } = await this.checked(specMessage);
    const now = Date.now();
    const status = await this.deps.store.update(
      id,
      spec,
      inputText,
      this.deps.clocks.of(spec).next(now),
      now,
    );
    if (status === undefined) throw notFound(id);
    this.deps.logger.info({ schedule: id, workflow: spec.workflow }, "schedule updated");
    return this.get(id);
  }

  async delete(id: string): Promise<void> {
    if (!(await this.deps.store.delete(id, this.deps.limits.runRetentionMs + 86_400_000))) throw notFound(id);
    this.deps.logger.info({ schedule: id }, "schedule deleted");
  }

  async pause(id: string, note: string): Promise<Schedule> {
    const before = await this.deps.store.pause(id, note, Date.now());
    if (before === undefined) throw notFound(id);
    if (before === "E") throw ended(id);
    if (before === "A") this.deps.logger.info({ schedule: id }, "schedule paused");
    return this.get(id);
  }

  /** Resumes from the next fire time after now: the paused period is not replayed. */
  async resume(id: string): Promise<Schedule> {
    const record = await this.deps.store.read(id);
    if (record === undefined) throw notFound(id);
    if (record.status === "E") throw ended(id);
    if (record.status === "P") {
      const now = Date.now();
      const next = this.deps.clocks.of(record.spec).next(now);
      const after = await this.deps.store.resume(id, record.spec, next, now);
      if (after === undefined) throw notFound(id);
      this.deps.logger.info({ schedule: id }, "schedule resumed");
    }
    return this.get(id);
  }

  /** Starts a run of the schedule now; the same idempotency key returns the same run. */
  async trigger(id: string, idempotencyKey: string): Promise<{ run: Run; created: boolean }> {
    const record = await this.deps.store.read(id);
    if (record === undefined) throw notFound(id);
    const now = Date.now();
    const key = `sched:${id}:now:${idempotencyKey === "" ? randomUUID() : idempotencyKey}`;
    const [result] = await this.start(record, [{ fireTime: now, key }]);
    const started = result as { run: Run; created: boolean };
    if (started.created) {
      await this.deps.store.recordRun(id, started.run.id);
      this.deps.logger.info({ schedule: id, runId: started.run.id }, "schedule triggered");
    }
    return started;
  }

  /**
   * Starts the runs of the schedule's fire times from `start` to `end` (both included, at most
   * {@link MAX_BACKFILL}), oldest first, whatever the overlap policy; each fire time's run is the
   * one its fire starts, so a repeated backfill starts nothing new.
   */
  async backfill(
    id: string,
    start: Timestamp | undefined,
    end: Timestamp | undefined,
  ): Promise<{ runIds: string[]; started: number }> {
    const startMs = start === undefined ? Number.NaN : ms(start);
    const endMs = end === undefined ? Number.NaN : ms(end);
    const violations = [];
    if (start === undefined) violations.push({ field: "start_time", description: "is required" });
    else if (Number.isNaN(startMs) || startMs < 0)
      violations.push({ field: "start_time", description: "is not a valid time after 1970" });
    if (end === undefined) violations.push({ field: "end_time", description: "is required" });
    else if (Number.isNaN(endMs)) violations.push({ field: "end_time", description: "is not a valid time" });
    else if (endMs > Date.now())
      violations.push({ field: "end_time", description: "is in the future: backfill a past range" });
    if (violations.length === 0 && endMs < startMs)
      violations.push({ field: "end_time", description: "must not be before start_time" });
    if (violations.length > 0) throw invalidArgument(violations);

    const record = await this.deps.store.read(id);
    if (record === undefined) throw notFound(id);
    // The range asked for, whatever the schedule's own start and end times.
    const clock = new ScheduleClock({ ...record.spec, startMs: 0, endMs: 0 });
    const times = clock.between(startMs - 1, endMs, MAX_BACKFILL + 1);
    if (times.length > MAX_BACKFILL) {
      throw invalidArgument([
        {
          field: "end_time",
          description: `the range holds more than ${MAX_BACKFILL} fire times; backfill it in several calls`,
        },
      ]);
    }
    const runIds: string[] = [];
    let started = 0;
    for (let i = 0; i < times.length; i += BACKFILL_CHUNK) {
      const chunk = times.slice(i, i + BACKFILL_CHUNK).map((t) => ({ fireTime: t, key: fireKey(id, t) }));
      for (const r of await this.start(record, chunk)) {
        runIds.push(r.run.id);
        if (r.created) started++;
      }
    }
    this.deps.logger.info({ schedule: id, fireTimes: times.length, started }, "schedule backfilled");
    return { runIds, started };
  }

  /** Starts the runs of `fires` with the schedule's workflow and input. */
  private start(record: ScheduleRecord, fires: { fireTime: number; key: string }[]) {
    const { spec } = record;
    const input = JSON.parse(record.inputText) as JsonValue;
    return this.deps.runs.triggerMany(
      fires.map(({ fireTime, key }) => ({
        workflow: spec.workflow,
        version: spec.version,
        input,
        idempotencyKey: key,
        schedule: { id: record.id, fireTime },
      })),
      (_, field) => `spec.${field}`,
    );
  }

  /** A spec checked whole: INVALID_ARGUMENT naming each problem, NOT_FOUND for its workflow. */
  private async checked(message: ScheduleSpec | undefined): Promise<{ spec: StoredSpec; inputText: string }> {
    const result = checkSpec(message, "spec", this.deps.limits.maxPayloadBytes);
    if ("violations" in result) throw invalidArgument(result.violations);
    if ("tooLarge" in result) throw new ConnectError(result.tooLarge, Code.ResourceExhausted);
    const { spec } = result;
    try {
      await this.deps.workflows.get(spec.workflow, spec.version);
    } catch (err) {
      const error = ConnectError.from(err);
      if (error.code !== Code.NotFound) throw err;
      const field = /has no version/.test(error.rawMessage) ? "spec.workflow_version" : "spec.workflow";
      throw new ConnectError(`${field}: ${error.rawMessage}`, Code.NotFound);
    }
    return result;
  }

  /** The Schedule message of a record, with its last run's status and `shown` next fire times. */
  private async view(record: ScheduleRecord, shown = 5): Promise<Schedule> {
    const status =
      record.lastRunId === ""
        ? null
        : await this.deps.redis.hget(this.deps.keys.run(record.lastRunId).run, "s");
    return scheduleOf(record, this.deps.clocks, status, shown);
  }
}

/** FAILED_PRECONDITION for a schedule whose end time passed. */
function ended(id: string): ConnectError {
  return new ConnectError(
    `schedule "${id}" has ended (no fire time is left before its end_time); update its spec to fire again`,
    Code.FailedPrecondition,
  );
}
