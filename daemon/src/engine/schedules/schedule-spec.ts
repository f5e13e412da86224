import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import {
  type Duration,
  durationFromMs,
  type Timestamp,
  timestampFromMs,
  ValueSchema,
} from "@bufbuild/protobuf/wkt";
import {
  OverlapPolicy,
  type ScheduleSpec,
  ScheduleSpecSchema,
} from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import { jsonValueOf, payloadBytes, type Violation } from "../shared/index.js";
import { type ClockSpec, isTimeZone, ScheduleClock } from "./clock.js";

/** A schedule's spec as stored (JSON in its hash's `spec` field), defaults applied; the input is kept apart. */
export interface StoredSpec extends ClockSpec {
  workflow: string;
  /** 0: the latest at each fire. */
  version: number;
  jitterMs: number;
  note: string;
  overlap: OverlapPolicy;
  catchUpWindowMs: number;
  maxCatchUp: number;
}

/** Defaults and bounds of a spec's fields. */
export const SPEC_LIMITS = {
  catchUpWindowMs: 3_600_000,
  minCatchUpWindowMs: 10_000,
  maxCatchUpWindowMs: 7 * 86_400_000,
  maxCatchUp: 10,
  maxMaxCatchUp: 100,
  maxJitterMs: 3_600_000,
  minIntervalMs: 1000,
  maxIntervalMs: 366 * 86_400_000,
  maxNoteChars: 1024,
  maxCronChars: 256,
} as const;

const NAME_RE = /^[A-Za-z0-9_.-]{1,128}$/;

/** Milliseconds of a Duration, or NaN when it is negative or malformed. */
function durationMs(d: Duration): number {
  if (d.seconds < 0n || d.nanos < 0 || d.nanos >= 1_000_000_000) return Number.NaN;
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1_000_000);
}

/** Milliseconds of a Timestamp, or NaN outside years 1970-9999. */
function timestampMs(t: Timestamp): number {
  const ms = Number(t.seconds) * 1000 + Math.floor(t.nanos / 1_000_000);
  return t.nanos < 0 || t.nanos >= 1_000_000_000 || ms < 0 || ms > 253_402_300_799_000 ? Number.NaN : ms;
}

/**
 * Checks a ScheduleSpec (fields named `<at>.<field>`) and returns it as stored with its input's
 * JSON text, or the violations. Whether the workflow exists is checked by the caller.
 */
export function checkSpec(
  spec: ScheduleSpec | undefined,
  at: string,
  maxPayloadBytes: number,
): { spec: StoredSpec; inputText: string } | { violations: Violation[] } | { tooLarge: string } {
  const violations: Violation[] = [];
  const bad = (field: string, description: string) =>
    violations.push({ field: `${at}.${field}`, description });
  if (spec === undefined) return { violations: [{ field: at, description: "is required" }] };
  if (spec.workflow === "") bad("workflow", "is required");
  else if (!NAME_RE.test(spec.workflow)) bad("workflow", "must be 1-128 characters from [A-Za-z0-9_.-]");

  let input: JsonValue = null;
  if (spec.input !== undefined) {
    const result = jsonValueOf(spec.input);
    if ("json" in result) input = result.json;
    else bad("input", result.problem);
  }
  const inputText = JSON.stringify(input);
  const bytes = payloadBytes(inputText, maxPayloadBytes, input);
  // As for Trigger: an input over the payload limit is RESOURCE_EXHAUSTED, once the rest is valid.
  const tooLarge =
    bytes > maxPayloadBytes
      ? `${at}.input: ${bytes} bytes exceeds the limit of ${maxPayloadBytes} bytes`
      : "";

  const ms = (d: Duration | undefined, field: string): number => {
    if (d === undefined) return 0;
    const v = durationMs(d);
    if (Number.isNaN(v)) bad(field, "must be a non-negative duration");
    return Number.isNaN(v) ? 0 : v;
  };
  const intervalMs = ms(spec.interval, "interval");
  const offsetMs = ms(spec.offset, "offset");
  const jitterMs = ms(spec.jitter, "jitter");
  const cron = spec.cron.trim();
  const timeZone = spec.timeZone === "" ? "UTC" : spec.timeZone;
  if (cron === "" && spec.interval === undefined) bad("cron", "set either cron or interval");
  if (cron !== "" && spec.interval !== undefined) bad("interval", "cannot be set together with cron");
  if (cron.length > SPEC_LIMITS.maxCronChars)
    bad("cron", `must be at most ${SPEC_LIMITS.maxCronChars} characters`);
  if (cron === "" && spec.timeZone !== "") bad("time_zone", "applies to cron only; an interval has none");
  if (cron !== "" && !isTimeZone(timeZone))
    bad("time_zone", `"${timeZone.slice(0, 64)}" is not an IANA time zone`);
  if (spec.interval !== undefined && intervalMs < SPEC_LIMITS.minIntervalMs)
    bad("interval", "must be at least 1s");
  if (intervalMs > SPEC_LIMITS.maxIntervalMs)
    bad("interval", "must be at most 366 days (use cron for rarer fires)");
  if (spec.offset !== undefined && cron !== "") bad("offset", "applies to interval only");
  else if (offsetMs > 0 && offsetMs >= intervalMs) bad("offset", "must be less than the interval");
  if (jitterMs > SPEC_LIMITS.maxJitterMs) bad("jitter", "must be at most 1h");

  const startMs = spec.startTime === undefined ? 0 : timestampMs(spec.startTime);
  const endMs = spec.endTime === undefined ? 0 : timestampMs(spec.endTime);
  if (Number.isNaN(startMs)) bad("start_time", "must be a time between 1970 and 9999");
  if (Number.isNaN(endMs)) bad("end_time", "must be a time between 1970 and 9999");
  if (startMs > 0 && endMs > 0 && endMs < startMs) bad("end_time", "must not be before start_time");
  if (spec.note.length > SPEC_LIMITS.maxNoteChars)
    bad("note", `must be at most ${SPEC_LIMITS.maxNoteChars} characters`);
  if (OverlapPolicy[spec.overlapPolicy] === undefined) bad("overlap_policy", "is not an overlap policy");

  let catchUpWindowMs: number = SPEC_LIMITS.catchUpWindowMs;
  if (spec.catchUpWindow !== undefined) {
    catchUpWindowMs = ms(spec.catchUpWindow, "catch_up_window");
    if (catchUpWindowMs < SPEC_LIMITS.minCatchUpWindowMs || catchUpWindowMs > SPEC_LIMITS.maxCatchUpWindowMs)
      bad("catch_up_window", "must be between 10s and 7 days");
  }
  const maxCatchUp = spec.maxCatchUpRuns === 0 ? SPEC_LIMITS.maxCatchUp : spec.maxCatchUpRuns;
  if (maxCatchUp < 1 || maxCatchUp > SPEC_LIMITS.maxMaxCatchUp)
    bad("max_catch_up_runs", `must be between 1 and ${SPEC_LIMITS.maxMaxCatchUp} (0: 10)`);
  if (violations.length > 0) return { violations };
  if (tooLarge !== "") return { tooLarge };

  const stored: StoredSpec = {
    workflow: spec.workflow,
    version: spec.workflowVersion,
    cron,
    timeZone: cron === "" ? "" : timeZone,
    intervalMs,
    offsetMs,
    startMs,
    endMs,
    jitterMs,
    note: spec.note,
    overlap: spec.overlapPolicy === OverlapPolicy.UNSPECIFIED ? OverlapPolicy.SKIP : spec.overlapPolicy,
    catchUpWindowMs,
    maxCatchUp,
  };
  let clock: ScheduleClock;
  try {
    clock = new ScheduleClock(stored);
  } catch (err) {
    // croner's messages name the part at fault ("Invalid value for minute: 61").
    const message = (err as Error).message.replace(/^CronPattern: /, "");
    return {
      violations: [{ field: `${at}.cron`, description: `is not a valid cron expression: ${message}` }],
    };
  }
  const from = Math.max(Date.now(), startMs > 0 ? startMs - 1 : 0);
  if (clock.next(from) === undefined) {
    const why =
      endMs > 0 && endMs <= Date.now()
        ? { field: "end_time", description: "is in the past: the schedule would never fire" }
        : endMs > 0
          ? { field: "end_time", description: "leaves no fire time: the schedule would never fire" }
          : { field: "cron", description: "matches no time to come: the schedule would never fire" };
    return { violations: [{ field: `${at}.${why.field}`, description: why.description }] };
  }
  return { spec: stored, inputText };
}

/** The ScheduleSpec of a stored spec, defaults shown. */
export function specToProto(spec: StoredSpec, inputText: string): ScheduleSpec {
  return create(ScheduleSpecSchema, {
    workflow: spec.workflow,
    workflowVersion: spec.version,
    input: fromJson(ValueSchema, JSON.parse(inputText) as JsonValue),
    cron: spec.cron,
    timeZone: spec.timeZone,
    interval: spec.intervalMs > 0 ? durationFromMs(spec.intervalMs) : undefined,
    offset: spec.offsetMs > 0 ? durationFromMs(spec.offsetMs) : undefined,
    startTime: spec.startMs > 0 ? timestampFromMs(spec.startMs) : undefined,
    endTime: spec.endMs > 0 ? timestampFromMs(spec.endMs) : undefined,
    jitter: spec.jitterMs > 0 ? durationFromMs(spec.jitterMs) : undefined,
    note: spec.note,
    overlapPolicy: spec.overlap,
    catchUpWindow: durationFromMs(spec.catchUpWindowMs),
    maxCatchUpRuns: spec.maxCatchUp,
  });
}
