import { toJson } from "@bufbuild/protobuf";
import { type DeadLetterQuery, durationMs, fromValue } from "@weft/sdk";
import { DeadLetterSchema, GetDeadLetterResponseSchema } from "@weft/sdk/gen/weft/v1/failure_service_pb.js";
import type { Command, CommandContext } from "../command.js";
import { UsageError } from "../exit-codes.js";
import { compactJson, table, time } from "../format.js";
import { oneArg, positiveInt } from "./args.js";

/** The filter options every `weft failed` command takes. */
const FILTER_OPTIONS = {
  queue: { type: "string" },
  workflow: { type: "string" },
  "error-type": { type: "string" },
  since: { type: "string" },
  until: { type: "string" },
} as const;

const FILTER_HELP = `  --queue <name>        only tasks of this task queue
  --workflow <name>     only tasks of runs of this workflow
  --error-type <type>   only tasks whose last error has this type
  --since <time>        only tasks that failed at or after this time: ISO 8601, or a duration ago ("2h")
  --until <time>        only tasks that failed before this time (same forms)`;

/** A time given as ISO 8601 or as a duration ago. */
function parseTime(text: string, flag: string, now = Date.now()): Date {
  try {
    return new Date(now - durationMs(text));
  } catch {
    const ms = Date.parse(text);
    if (Number.isNaN(ms)) {
      throw new UsageError(
        `${flag}: "${text}" is neither a time (2024-05-01T10:00:00Z) nor a duration ago ("2h")`,
      );
    }
    return new Date(ms);
  }
}

/** The filter the options give. */
function queryOf(options: CommandContext["options"]): DeadLetterQuery {
  const q: DeadLetterQuery = {};
  if (options.queue !== undefined) q.queue = String(options.queue);
  if (options.workflow !== undefined) q.workflow = String(options.workflow);
  if (options["error-type"] !== undefined) q.errorType = String(options["error-type"]);
  if (options.since !== undefined) q.since = parseTime(String(options.since), "--since");
  if (options.until !== undefined) q.until = parseTime(String(options.until), "--until");
  return q;
}

/** `weft failed ls`. */
export const failedList: Command = {
  path: ["failed", "ls"],
  summary: "list tasks that failed for good (the dead-letter view), newest first",
  help: `Usage: weft failed ls [filters] [--limit N]

Lists the tasks that failed for good (retries exhausted, a non-retryable error, a timeout), newest
first, with their run, queue, attempts and last error. Each line's ID names the entry for
weft failed get / retry / discard.

Options:
${FILTER_HELP}
  --limit <n>           show at most n entries (default 20; 0 for all)`,
  options: { ...FILTER_OPTIONS, limit: { type: "string" } },
  async run({ args, options, io, client }) {
    if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
    const limit = options.limit === undefined ? 20 : positiveInt(String(options.limit), "--limit");
    const rows: string[][] = [];
    const query = { ...queryOf(options), pageSize: limit === 0 ? 100 : Math.min(limit, 100) };
    for await (const d of client().listDeadLetters(query)) {
      if (options.json === true) io.out(`${JSON.stringify(toJson(DeadLetterSchema, d))}\n`);
      const error =
        d.error === undefined ? "" : `${d.error.type === "" ? "" : `${d.error.type}: `}${d.error.message}`;
      rows.push([
        d.id,
        d.workflow,
        d.queue,
        `${d.attempts}/${d.maxAttempts}`,
        time(d.failTime),
        error.length > 80 ? `${error.slice(0, 79)}…` : error,
      ]);
      if (rows.length === limit) break;
    }
    if (options.json === true) return 0;
    io.out(
      rows.length === 0
        ? "no tasks failed for good\n"
        : table(["ID (RUN/TASK/RESUMES)", "WORKFLOW", "QUEUE", "ATTEMPTS", "FAILED", "ERROR"], rows),
    );
    return 0;
  },
};

/** `weft failed get ID`. */
export const failedGet: Command = {
  path: ["failed", "get"],
  summary: "show a task that failed for good, with the error of every attempt",
  help: `Usage: weft failed get ID

Shows one dead letter whole: its run, task, queue and handler, the error of every attempt, the
task's input, the run's input and the outputs of its parents.`,
  options: {},
  async run({ args, options, io, client }) {
    const res = await client().getDeadLetter(oneArg(args, "ID"));
    if (options.json === true) {
      io.out(`${JSON.stringify(toJson(GetDeadLetterResponseSchema, res))}\n`);
      return 0;
    }
    const d = res.deadLetter;
    const lines = [
      `dead letter ${d?.id}`,
      `run: ${d?.runId} (workflow ${d?.workflow} version ${d?.workflowVersion})`,
      `task: ${d?.taskId} (queue ${d?.queue}, handler ${d?.handler})`,
      `attempts: ${d?.attempts}/${d?.maxAttempts}`,
      `failed: ${time(d?.failTime)}`,
      `error: ${d?.error?.type}: ${d?.error?.message}`,
    ];
    if ((d?.error?.details ?? "") !== "")
      lines.push(...(d?.error?.details ?? "").split("\n").map((l) => `    ${l}`));
    lines.push("attempts:");
    for (const a of res.attemptErrors) {
      lines.push(
        `  #${a.attempt} ${time(a.time)}${a.workerId === "" ? "" : ` on ${a.workerId}`}: ${a.error?.type}: ${a.error?.message}`,
      );
    }
    lines.push(`input: ${compactJson(fromValue(res.input))}`);
    lines.push(`run input: ${compactJson(fromValue(res.runInput))}`);
    for (const [task, output] of Object.entries(res.parentOutputs)) {
      lines.push(`output of ${task}: ${compactJson(fromValue(output))}`);
    }
    if (res.omittedFields.length > 0) lines.push(`left out (too large): ${res.omittedFields.join(", ")}`);
    io.out(`${lines.join("\n")}\n`);
    return 0;
  },
};

/** What `retry` and `discard` act on: one entry, or every entry matching the filters (--all). */
function target(ctx: CommandContext): { id: string } | { query: DeadLetterQuery } {
  const { args, options } = ctx;
  const filtered = Object.keys(FILTER_OPTIONS).some((f) => options[f] !== undefined);
  if (options.all === true) {
    if (args.length > 0) throw new UsageError(`--all takes no ID (got "${args[0]}")`);
    return { query: queryOf(options) };
  }
  if (filtered) throw new UsageError("filters act on every matching entry: add --all");
  return { id: oneArg(args, "ID") };
}

/** `weft failed retry`. */
export const failedRetry: Command = {
  path: ["failed", "retry"],
  summary: "retry a task that failed for good (its run resumes), or every match with --all",
  help: `Usage: weft failed retry ID
       weft failed retry --all [filters]

Retries dead letters: each one's run resumes under the same id (its failed, cancelled and skipped
tasks run again, its succeeded tasks keep their outputs), and the entry leaves the view. With
--all, every entry matching the filters, 500 per call to weftd, until none is left.

Options:
  --all                 every entry matching the filters (all entries when none is given)
${FILTER_HELP}`,
  options: { ...FILTER_OPTIONS, all: { type: "boolean" } },
  async run(ctx) {
    const { io, options } = ctx;
    const what = target(ctx);
    const client = ctx.client();
    if ("id" in what) {
      const r = await client.retryDeadLetter(what.id);
      if (options.json === true) io.out(`${JSON.stringify({ resumed: r.resumed, runId: r.run.id })}\n`);
      else io.out(r.resumed ? `run ${r.run.id} resumed\n` : `run ${r.run.id} was already resumed\n`);
      return 0;
    }
    const totals = await client.retryDeadLetters(what.query, {
      onProgress: ({ handled }) => {
        if (options.json !== true && io.isTTY) io.err(`\r${handled} handled…`);
      },
    });
    if (options.json !== true && io.isTTY) io.err("\r");
    if (options.json === true) io.out(`${JSON.stringify(totals)}\n`);
    else {
      io.out(
        `${totals.retried} retried (${totals.runsResumed} runs resumed)` +
          `${totals.skipped > 0 ? `, ${totals.skipped} skipped (their run was resumed already or is running)` : ""}\n`,
      );
    }
    return 0;
  },
};

/** `weft failed discard`. */
export const failedDiscard: Command = {
  path: ["failed", "discard"],
  summary: "discard a task that failed for good from the view, or every match with --all",
  help: `Usage: weft failed discard ID
       weft failed discard --all [filters]

Discards dead letters: they leave the view; their runs stay as they are. With --all, every entry
matching the filters, 500 per call to weftd, until none is left.

Options:
  --all                 every entry matching the filters (all entries when none is given)
${FILTER_HELP}`,
  options: { ...FILTER_OPTIONS, all: { type: "boolean" } },
  async run(ctx) {
    const { io, options } = ctx;
    const what = target(ctx);
    const client = ctx.client();
    if ("id" in what) {
      const d = await client.discardDeadLetter(what.id);
      if (options.json === true) io.out(`${JSON.stringify(toJson(DeadLetterSchema, d))}\n`);
      else io.out(`discarded ${d.id}\n`);
      return 0;
    }
    const { discarded } = await client.discardDeadLetters(what.query);
    io.out(options.json === true ? `${JSON.stringify({ discarded })}\n` : `${discarded} discarded\n`);
    return 0;
  },
};
