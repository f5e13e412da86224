import { toJson } from "@bufbuild/protobuf";
import {
  durationMs,
  formatDuration,
  fromDuration,
  fromValue,
  type JsonValue,
  type Overlap,
  OverlapPolicy,
  type Schedule,
  type ScheduleSpecInput,
  ScheduleStatus,
} from "@weft/sdk";
import { RunSchema } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { ScheduleSchema } from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import type { Command } from "../command.js";
import { UsageError } from "../exit-codes.js";
import { compactJson, runStatusName, table, time } from "../format.js";
import { oneArg, positiveInt } from "./args.js";

const OVERLAPS: readonly Overlap[] = ["skip", "buffer_one", "allow_all", "cancel_previous"];

/** A status without its prefix: `ACTIVE`. */
function statusName(status: ScheduleStatus): string {
  return ScheduleStatus[status] ?? String(status);
}

/** When a schedule fires, in a few words: `30 2 * * * (Europe/Paris)` or `every 15m (+5m)`. */
function when(s: Schedule): string {
  const spec = s.spec;
  if (spec === undefined) return "-";
  if (spec.cron !== "") return `${spec.cron} (${spec.timeZone})`;
  const every = spec.interval === undefined ? 0 : fromDuration(spec.interval);
  const offset = spec.offset === undefined ? 0 : fromDuration(spec.offset);
  return `every ${formatDuration(every)}${offset > 0 ? ` (+${formatDuration(offset)})` : ""}`;
}

/** A time given on the command line: ISO 8601 (`2025-03-01T02:00:00Z`) or milliseconds since the epoch. */
function parseTime(text: string, flag: string): Date {
  const date = /^\d+$/.test(text) ? new Date(Number(text)) : new Date(text);
  if (Number.isNaN(date.getTime())) {
    throw new UsageError(`${flag} must be a time such as 2025-03-01T02:00:00Z, got "${text}"`);
  }
  return date;
}

/** A duration flag (`30s`, `15m`, `1h`). */
function parseDuration(text: string, flag: string): string {
  try {
    durationMs(text);
  } catch {
    throw new UsageError(`${flag} must be a duration such as 30s, 15m or 1h, got "${text}"`);
  }
  return text;
}

function parseJson(text: string, flag: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new UsageError(`${flag} is not valid JSON: ${(err as Error).message}`);
  }
}

/** The lines of `weft schedules get`. */
function describe(s: Schedule): string {
  const spec = s.spec;
  const lines = [
    `schedule ${s.id}`,
    `workflow: ${spec?.workflow ?? "-"}${spec?.workflowVersion ? ` version ${spec.workflowVersion}` : " (latest)"}`,
    `fires: ${when(s)}`,
    `status: ${statusName(s.status)}${s.pauseNote === "" ? "" : ` (${s.pauseNote})`}`,
    `overlap: ${(OverlapPolicy[spec?.overlapPolicy ?? 0] ?? "SKIP").toLowerCase()}`,
    `catch-up: within ${formatDuration(spec?.catchUpWindow === undefined ? 0 : fromDuration(spec.catchUpWindow))}, at most ${spec?.maxCatchUpRuns ?? 0} runs`,
  ];
  if (spec?.startTime !== undefined) lines.push(`start: ${time(spec.startTime)}`);
  if (spec?.endTime !== undefined) lines.push(`end: ${time(spec.endTime)}`);
  if (spec?.jitter !== undefined) lines.push(`jitter: ${formatDuration(fromDuration(spec.jitter))}`);
  if (spec !== undefined && spec.note !== "") lines.push(`note: ${spec.note}`);
  lines.push(`input: ${compactJson(fromValue(spec?.input))}`);
  lines.push(`next fires: ${s.nextFireTimes.length === 0 ? "-" : s.nextFireTimes.map(time).join(", ")}`);
  lines.push(`last fire: ${time(s.lastFireTime)}`);
  lines.push(
    `last run: ${s.lastRunId === "" ? "-" : `${s.lastRunId} (${runStatusName(s.lastRunStatus).replace("UNSPECIFIED", "expired")})`}`,
  );
  if (s.bufferedFireTime !== undefined) lines.push(`buffered fire: ${time(s.bufferedFireTime)}`);
  lines.push(`fired: ${s.firedCount}  skipped: ${s.skippedCount}  missed: ${s.missedCount}`);
  if (s.lastError !== "") lines.push(`last error: ${s.lastError}`);
  return `${lines.join("\n")}\n`;
}

/** `weft schedules create`. */
export const schedulesCreate: Command = {
  path: ["schedules", "create"],
  summary: "create a schedule that starts runs of a workflow on a clock",
  help: `Usage: weft schedules create WORKFLOW (--cron EXPR [--tz ZONE] | --every DURATION [--offset DURATION]) [options]

Creates a schedule that starts a run of WORKFLOW at each fire time: of a cron expression (5 fields,
or 6 with seconds first, or @daily, @hourly…) in an IANA time zone (default UTC), or every fixed
interval counted from the Unix epoch. Prints the schedule's id and its next fire times.

Options:
  --id <id>                   the schedule's id (default: a new random id)
  --cron <expr>               cron expression, e.g. "0 9 * * MON"
  --tz <zone>                 time zone of --cron, e.g. Europe/Paris (default UTC)
  --every <duration>          fixed interval, e.g. 15m (at least 1s)
  --offset <duration>         offset of --every's fire times, e.g. 5m
  --input <json>              run input, any JSON value (default null)
  --version <n>               run this version of the workflow (default: the latest at each fire)
  --overlap <policy>          while the previous run runs: skip (default), buffer_one, allow_all, cancel_previous
  --start <time> --end <time> fire only between these times (ISO 8601)
  --jitter <duration>         start each fire up to this much later (at most 1h)
  --catch-up-window <dur>     how late a fire may still start after weftd was down (default 1h)
  --max-catch-up <n>          most late fires started when catching up (default 10)
  --note <text>               free text
  --paused                    create it paused`,
  options: {
    id: { type: "string" },
    cron: { type: "string" },
    tz: { type: "string" },
    every: { type: "string" },
    offset: { type: "string" },
    input: { type: "string" },
    version: { type: "string" },
    overlap: { type: "string" },
    start: { type: "string" },
    end: { type: "string" },
    jitter: { type: "string" },
    "catch-up-window": { type: "string" },
    "max-catch-up": { type: "string" },
    note: { type: "string" },
    paused: { type: "boolean" },
  },
  async run({ args, options: o, io, client }) {
    const workflow = oneArg(args, "WORKFLOW");
    if ((o.cron === undefined) === (o.every === undefined))
      throw new UsageError("give --cron or --every (one of them)");
    if (o.tz !== undefined && o.cron === undefined) throw new UsageError("--tz goes with --cron");
    if (o.offset !== undefined && o.every === undefined) throw new UsageError("--offset goes with --every");
    const overlap = o.overlap === undefined ? undefined : String(o.overlap).toLowerCase().replace(/-/g, "_");
    if (overlap !== undefined && !OVERLAPS.includes(overlap as Overlap)) {
      throw new UsageError(`--overlap must be one of ${OVERLAPS.join(", ")}, got "${String(o.overlap)}"`);
    }
    const str = (name: string) => (o[name] === undefined ? undefined : String(o[name]));
    const spec: ScheduleSpecInput = { workflow };
    if (o.cron !== undefined) spec.cron = String(o.cron);
    if (o.tz !== undefined) spec.timeZone = String(o.tz);
    if (o.every !== undefined) spec.every = parseDuration(String(o.every), "--every");
    if (o.offset !== undefined) spec.offset = parseDuration(String(o.offset), "--offset");
    if (o.input !== undefined) spec.input = parseJson(String(o.input), "--input");
    if (o.version !== undefined) spec.version = positiveInt(String(o.version), "--version");
    if (overlap !== undefined) spec.overlap = overlap as Overlap;
    if (o.start !== undefined) spec.startAt = parseTime(String(o.start), "--start");
    if (o.end !== undefined) spec.endAt = parseTime(String(o.end), "--end");
    if (o.jitter !== undefined) spec.jitter = parseDuration(String(o.jitter), "--jitter");
    const window = str("catch-up-window");
    if (window !== undefined) spec.catchUpWindow = parseDuration(window, "--catch-up-window");
    const max = str("max-catch-up");
    if (max !== undefined) spec.maxCatchUpRuns = positiveInt(max, "--max-catch-up");
    if (o.note !== undefined) spec.note = String(o.note);
    const created = await client().createSchedule(spec, {
      ...(o.id === undefined ? {} : { id: String(o.id) }),
      paused: o.paused === true,
    });
    if (o.json === true) {
      io.out(`${JSON.stringify(toJson(ScheduleSchema, created))}\n`);
      return 0;
    }
    io.out(`schedule ${created.id} created: ${workflow}, ${when(created)}, ${statusName(created.status)}\n`);
    if (created.nextFireTimes.length > 0)
      io.out(`next fires: ${created.nextFireTimes.map(time).join(", ")}\n`);
    return 0;
  },
};

/** `weft schedules ls`. */
export const schedulesList: Command = {
  path: ["schedules", "ls"],
  summary: "list schedules",
  help: `Usage: weft schedules ls

Lists the schedules by id: workflow, when they fire, status, next fire, last run, and how many
fires started a run, were skipped (the previous run was running) or missed (weftd was down).`,
  options: {},
  async run({ args, options, io, client }) {
    if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
    const rows: string[][] = [];
    for await (const s of client().listSchedules()) {
      if (options.json === true) io.out(`${JSON.stringify(toJson(ScheduleSchema, s))}\n`);
      rows.push([
        s.id,
        s.spec?.workflow ?? "-",
        when(s),
        statusName(s.status),
        time(s.nextFireTimes[0]),
        s.lastRunId === "" ? "-" : s.lastRunId,
        `${s.firedCount}/${s.skippedCount}/${s.missedCount}`,
      ]);
    }
    if (options.json === true) return 0;
    io.out(
      rows.length === 0
        ? "no schedules\n"
        : table(
            ["SCHEDULE", "WORKFLOW", "FIRES", "STATUS", "NEXT FIRE", "LAST RUN", "FIRED/SKIPPED/MISSED"],
            rows,
          ),
    );
    return 0;
  },
};

/** `weft schedules get ID`. */
export const schedulesGet: Command = {
  path: ["schedules", "get"],
  summary: "show a schedule with its next fire times and counts",
  help: `Usage: weft schedules get SCHEDULE_ID

Shows a schedule: what it runs, when, its status, its next five fire times, its last fire and
last run, and how many fires started a run, were skipped or were missed.`,
  options: {},
  async run({ args, options, io, client }) {
    const s = await client().getSchedule(oneArg(args, "SCHEDULE_ID"));
    io.out(options.json === true ? `${JSON.stringify(toJson(ScheduleSchema, s))}\n` : describe(s));
    return 0;
  },
};

/** `weft schedules pause ID`. */
export const schedulesPause: Command = {
  path: ["schedules", "pause"],
  summary: "pause a schedule",
  help: `Usage: weft schedules pause SCHEDULE_ID [--note TEXT]

Pauses a schedule: it starts no run until resumed. Runs already started go on.

Options:
  --note <text>   why it is paused, shown by weft schedules get`,
  options: { note: { type: "string" } },
  async run({ args, options, io, client }) {
    const s = await client().pauseSchedule(
      oneArg(args, "SCHEDULE_ID"),
      options.note === undefined ? "" : String(options.note),
    );
    io.out(
      options.json === true ? `${JSON.stringify(toJson(ScheduleSchema, s))}\n` : `schedule ${s.id} paused\n`,
    );
    return 0;
  },
};

/** `weft schedules resume ID`. */
export const schedulesResume: Command = {
  path: ["schedules", "resume"],
  summary: "resume a paused schedule",
  help: `Usage: weft schedules resume SCHEDULE_ID

Resumes a paused schedule from its next fire time after now: the fire times that passed while it
was paused are not started (weft schedules backfill starts them, if wanted).`,
  options: {},
  async run({ args, options, io, client }) {
    const s = await client().resumeSchedule(oneArg(args, "SCHEDULE_ID"));
    if (options.json === true) io.out(`${JSON.stringify(toJson(ScheduleSchema, s))}\n`);
    else io.out(`schedule ${s.id} resumed; next fire ${time(s.nextFireTimes[0])}\n`);
    return 0;
  },
};

/** `weft schedules rm ID`. */
export const schedulesRemove: Command = {
  path: ["schedules", "rm"],
  summary: "delete a schedule (its runs are kept)",
  help: `Usage: weft schedules rm SCHEDULE_ID

Deletes a schedule. The runs it started are kept.`,
  options: {},
  async run({ args, io, client }) {
    const id = oneArg(args, "SCHEDULE_ID");
    await client().deleteSchedule(id);
    io.out(`schedule ${id} deleted\n`);
    return 0;
  },
};

/** `weft schedules trigger ID`. */
export const schedulesTrigger: Command = {
  path: ["schedules", "trigger"],
  summary: "start a run of a schedule now",
  help: `Usage: weft schedules trigger SCHEDULE_ID [--idempotency-key K]

Starts a run of the schedule's workflow with its input now, whatever its overlap policy and even
when it is paused, and prints the run's id.

Options:
  --idempotency-key <key>   start at most one run per key`,
  options: { "idempotency-key": { type: "string" } },
  async run({ args, options, io, client }) {
    const key = options["idempotency-key"];
    const { run, created } = await client().triggerSchedule(
      oneArg(args, "SCHEDULE_ID"),
      key === undefined ? {} : { idempotencyKey: String(key) },
    );
    if (options.json === true) io.out(`${JSON.stringify({ created, run: toJson(RunSchema, run) })}\n`);
    else io.out(`run ${run.id} ${created ? "started" : "already exists"}\n`);
    return 0;
  },
};

/** `weft schedules backfill ID --from T --to T`. */
export const schedulesBackfill: Command = {
  path: ["schedules", "backfill"],
  summary: "start the runs of a schedule's past fire times",
  help: `Usage: weft schedules backfill SCHEDULE_ID --from TIME --to TIME

Starts a run for each fire time of the schedule from --from to --to (both included, ISO 8601, at
most 1,000 fire times, not in the future), oldest first, whatever the overlap policy. Each fire
time has one run: backfilling the same range again starts nothing new.

Options:
  --from <time>   first time of the range, e.g. 2025-03-01T00:00:00Z
  --to <time>     last time of the range`,
  options: { from: { type: "string" }, to: { type: "string" } },
  async run({ args, options, io, client }) {
    const id = oneArg(args, "SCHEDULE_ID");
    if (options.from === undefined || options.to === undefined)
      throw new UsageError("--from and --to are required");
    const from = parseTime(String(options.from), "--from");
    const to = parseTime(String(options.to), "--to");
    const { runIds, started } = await client().backfillSchedule(id, from, to);
    if (options.json === true) io.out(`${JSON.stringify({ runIds, started })}\n`);
    else
      io.out(
        `${runIds.length} fire times: ${started} runs started, ${runIds.length - started} already existed\n`,
      );
    return 0;
  },
};
