import { create, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type CallOptions, createClient, type Transport } from "@connectrpc/connect";
import { type DurationInput, toDuration } from "./duration.js";
import type { CallContext } from "./error-mapping.js";
import type { Run } from "./gen/weft/v1/run_pb.js";
import {
  OverlapPolicy,
  type Schedule,
  ScheduleService,
  type ScheduleSpec,
  ScheduleSpecSchema,
} from "./gen/weft/v1/schedule_service_pb.js";
import { toValue } from "./json-value.js";

/** What a schedule's fire does while its previous run still runs (see docs/schedules.md). */
export type Overlap = "skip" | "buffer_one" | "allow_all" | "cancel_previous";

const OVERLAP: Record<Overlap, OverlapPolicy> = {
  skip: OverlapPolicy.SKIP,
  buffer_one: OverlapPolicy.BUFFER_ONE,
  allow_all: OverlapPolicy.ALLOW_ALL,
  cancel_previous: OverlapPolicy.CANCEL_PREVIOUS,
};

/** What a schedule starts and when: set `cron` or `every`. */
export interface ScheduleSpecInput {
  /** Workflow to run. */
  workflow: string;
  /**
   * Version to run.
   * @defaultValue 0 (the latest at each fire)
   */
  version?: number;
  /**
   * Run input, the same for every run.
   * @defaultValue null
   */
  input?: JsonValue;
  /** Cron expression: 5 fields, 6 with seconds first, or a nickname such as "@daily". */
  cron?: string;
  /**
   * IANA time zone of `cron`, e.g. "Europe/Paris".
   * @defaultValue "UTC"
   */
  timeZone?: string;
  /** Fixed interval between fire times (at least 1s), counted from the Unix epoch. */
  every?: DurationInput;
  /** Offset of `every`'s fire times. */
  offset?: DurationInput;
  /** No fire time before this. */
  startAt?: Date;
  /** No fire time after this. */
  endAt?: Date;
  /** Start each fire up to this much later (fixed per fire time, at most 1h). */
  jitter?: DurationInput;
  /** Free text for people. */
  note?: string;
  /**
   * What a fire does while the previous run still runs.
   * @defaultValue "skip"
   */
  overlap?: Overlap;
  /**
   * How late a fire may still start after weftd was down (10s to 7 days).
   * @defaultValue "1h"
   */
  catchUpWindow?: DurationInput;
  /**
   * Most late fire times started when catching up (1-100).
   * @defaultValue 10
   */
  maxCatchUpRuns?: number;
}

/** Options of {@link ScheduleMethods.createSchedule}. */
export interface CreateScheduleOptions {
  /** Id of the schedule ([A-Za-z0-9_.-], 1-128 characters); weftd makes one when unset. */
  id?: string;
  /** Create it paused. */
  paused?: boolean;
}

/** What {@link ScheduleMethods.backfillSchedule} returns. */
export interface BackfillResult {
  /** The runs of the range's fire times, oldest first. */
  runIds: string[];
  /** How many of them this call started; the others existed already. */
  started: number;
}

/** The schedule calls of a {@link WeftClient} (weft.v1.ScheduleService). */
export interface ScheduleMethods {
  /** Creates a schedule. @throws InvalidArgumentError, WorkflowNotFoundError */
  createSchedule(spec: ScheduleSpecInput, options?: CreateScheduleOptions): Promise<Schedule>;
  /** A schedule with its next fire times, last fire and counts. @throws ScheduleNotFoundError */
  getSchedule(id: string): Promise<Schedule>;
  /** Every schedule, by id, fetched page by page as the iteration goes. */
  listSchedules(options?: { pageSize?: number }): AsyncIterable<Schedule>;
  /** Replaces a schedule's spec. @throws ScheduleNotFoundError, InvalidArgumentError */
  updateSchedule(id: string, spec: ScheduleSpecInput): Promise<Schedule>;
  /** Deletes a schedule; its runs are kept. @throws ScheduleNotFoundError */
  deleteSchedule(id: string): Promise<void>;
  /** Pauses a schedule (idempotent). @throws ScheduleNotFoundError */
  pauseSchedule(id: string, note?: string): Promise<Schedule>;
  /** Resumes a schedule from its next fire time after now (idempotent). @throws ScheduleNotFoundError */
  resumeSchedule(id: string): Promise<Schedule>;
  /** Starts a run of the schedule now; the same key returns the same run. @throws ScheduleNotFoundError */
  triggerSchedule(id: string, options?: { idempotencyKey?: string }): Promise<{ run: Run; created: boolean }>;
  /** Starts the runs of the fire times from `start` to `end` (past, at most 1,000), each once. */
  backfillSchedule(id: string, start: Date, end: Date): Promise<BackfillResult>;
}

/** The ScheduleSpec message of a {@link ScheduleSpecInput}. */
export function toScheduleSpec(spec: ScheduleSpecInput): ScheduleSpec {
  const overlap = spec.overlap === undefined ? OverlapPolicy.UNSPECIFIED : OVERLAP[spec.overlap];
  if (overlap === undefined) {
    throw new TypeError(
      `"${String(spec.overlap)}" is not an overlap policy (${Object.keys(OVERLAP).join(", ")})`,
    );
  }
  return create(ScheduleSpecSchema, {
    workflow: spec.workflow,
    workflowVersion: spec.version ?? 0,
    input: toValue(spec.input ?? null),
    cron: spec.cron ?? "",
    timeZone: spec.timeZone ?? "",
    interval: spec.every === undefined ? undefined : toDuration(spec.every),
    offset: spec.offset === undefined ? undefined : toDuration(spec.offset),
    startTime: spec.startAt === undefined ? undefined : timestampFromDate(spec.startAt),
    endTime: spec.endAt === undefined ? undefined : timestampFromDate(spec.endAt),
    jitter: spec.jitter === undefined ? undefined : toDuration(spec.jitter),
    note: spec.note ?? "",
    overlapPolicy: overlap,
    catchUpWindow: spec.catchUpWindow === undefined ? undefined : toDuration(spec.catchUpWindow),
    maxCatchUpRuns: spec.maxCatchUpRuns ?? 0,
  });
}

/** The schedule calls over `transport`; `call` maps errors as the client's other calls do. */
export function scheduleMethods(
  transport: Transport,
  call: <T>(context: CallContext, fn: () => Promise<T>) => Promise<T>,
  unary: CallOptions,
): ScheduleMethods {
  const rpc = createClient(ScheduleService, transport);
  const schedule = (res: { schedule?: Schedule }) => res.schedule as Schedule;
  return {
    async createSchedule(spec, options = {}) {
      const message = toScheduleSpec(spec);
      return schedule(
        await call({ workflow: spec.workflow, version: spec.version ?? 0 }, () =>
          rpc.createSchedule(
            { scheduleId: options.id ?? "", spec: message, paused: options.paused ?? false },
            unary,
          ),
        ),
      );
    },
    async getSchedule(id) {
      return schedule(await call({ scheduleId: id }, () => rpc.getSchedule({ scheduleId: id }, unary)));
    },
    async *listSchedules(options = {}) {
      let pageToken = "";
      do {
        const page = await call({}, () =>
          rpc.listSchedules({ pageSize: options.pageSize ?? 100, pageToken }, unary),
        );
        yield* page.schedules;
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
    },
    async updateSchedule(id, spec) {
      const message = toScheduleSpec(spec);
      return schedule(
        await call({ scheduleId: id, workflow: spec.workflow }, () =>
          rpc.updateSchedule({ scheduleId: id, spec: message }, unary),
        ),
      );
    },
    async deleteSchedule(id) {
      await call({ scheduleId: id }, () => rpc.deleteSchedule({ scheduleId: id }, unary));
    },
    async pauseSchedule(id, note = "") {
      return schedule(
        await call({ scheduleId: id }, () => rpc.pauseSchedule({ scheduleId: id, note }, unary)),
      );
    },
    async resumeSchedule(id) {
      return schedule(await call({ scheduleId: id }, () => rpc.resumeSchedule({ scheduleId: id }, unary)));
    },
    async triggerSchedule(id, options = {}) {
      const res = await call({ scheduleId: id }, () =>
        rpc.triggerSchedule({ scheduleId: id, idempotencyKey: options.idempotencyKey ?? "" }, unary),
      );
      return { run: res.run as Run, created: res.created };
    },
    async backfillSchedule(id, start, end) {
      const res = await call({ scheduleId: id }, () =>
        rpc.backfillSchedule(
          { scheduleId: id, startTime: timestampFromDate(start), endTime: timestampFromDate(end) },
          unary,
        ),
      );
      return { runIds: res.runIds, started: res.startedCount };
    },
  };
}
