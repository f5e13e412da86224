import { toJson } from "@bufbuild/protobuf";
import { formatDuration, fromValue, RunStatus, TaskStatus } from "@weft/sdk";
import { RunSchema } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { Command } from "../command.js";
import { UsageError } from "../exit-codes.js";
import {
  attempts,
  compactJson,
  elapsedMs,
  parseRunStatus,
  runStatusName,
  table,
  taskDuration,
  taskStatusName,
  time,
} from "../format.js";
import { oneArg, positiveInt } from "./args.js";

/** `weft runs ls`. */
export const runsList: Command = {
  path: ["runs", "ls"],
  summary: "list runs, newest first",
  help: `Usage: weft runs ls [--workflow NAME] [--schedule ID] [--status STATUS[,STATUS]] [--limit N]

Lists runs, newest first.

Options:
  --workflow <name>     only runs of this workflow
  --schedule <id>       only runs started by this schedule
  --status <statuses>   only runs in these statuses: running, succeeded, failed, cancelled, timed_out
  --limit <n>           show at most n runs (default 20; 0 for all)`,
  options: {
    workflow: { type: "string" },
    schedule: { type: "string" },
    status: { type: "string" },
    limit: { type: "string" },
  },
  async run({ args, options, io, client }) {
    if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
    const statuses = (options.status === undefined ? [] : String(options.status).split(",")).map((s) => {
      const status = parseRunStatus(s);
      if (status === undefined) {
        throw new UsageError(
          `--status: unknown status "${s}" (running, succeeded, failed, cancelled, timed_out)`,
        );
      }
      return status;
    });
    const limit = options.limit === undefined ? 20 : positiveInt(String(options.limit), "--limit");
    const rows: string[][] = [];
    const filter = {
      statuses,
      pageSize: limit === 0 ? 100 : Math.min(limit, 100),
      ...(options.workflow === undefined ? {} : { workflow: String(options.workflow) }),
      ...(options.schedule === undefined ? {} : { scheduleId: String(options.schedule) }),
    };
    for await (const r of client().listRuns(filter)) {
      if (options.json === true) io.out(`${JSON.stringify(toJson(RunSchema, r))}\n`);
      const duration =
        r.status === RunStatus.RUNNING ? "-" : formatDuration(elapsedMs(r.createTime, r.finishTime));
      rows.push([
        r.id,
        r.workflow,
        String(r.workflowVersion),
        runStatusName(r.status),
        time(r.createTime),
        duration,
      ]);
      if (rows.length === limit) break;
    }
    if (options.json === true) return 0;
    io.out(
      rows.length === 0
        ? "no runs\n"
        : table(["RUN", "WORKFLOW", "VERSION", "STATUS", "CREATED", "DURATION"], rows),
    );
    return 0;
  },
};

/** `weft runs get RUN_ID`. */
export const runsGet: Command = {
  path: ["runs", "get"],
  summary: "show a run with its tasks",
  help: `Usage: weft runs get RUN_ID

Shows a run: its workflow, status, times, input, every task (status, attempt, queue, worker,
duration, error), why a queued task waits, and the run's output.`,
  options: {},
  async run({ args, options, io, client }) {
    const run = await client().getRun(oneArg(args, "RUN_ID"));
    if (options.json === true) {
      io.out(`${JSON.stringify(toJson(RunSchema, run))}\n`);
      return 0;
    }
    const lines = [
      `run ${run.id}`,
      `workflow: ${run.workflow} version ${run.workflowVersion}`,
      `status: ${runStatusName(run.status)}`,
      `created: ${time(run.createTime)}`,
    ];
    if (run.finishTime !== undefined) {
      lines.push(
        `finished: ${time(run.finishTime)} (${formatDuration(elapsedMs(run.createTime, run.finishTime))})`,
      );
    }
    if (run.idempotencyKey !== "") lines.push(`idempotency key: ${run.idempotencyKey}`);
    if (run.error !== "") lines.push(`error: ${run.error}`);
    lines.push(`input: ${compactJson(fromValue(run.input))}`);
    io.out(`${lines.join("\n")}\n`);
    const rows = run.tasks.map((t) => [
      t.taskId,
      taskStatusName(t.status),
      attempts(t),
      t.queue === "" ? "-" : t.queue,
      t.workerId === "" ? "-" : t.workerId,
      taskDuration(t),
      t.error === undefined ? "" : `${t.error.type === "" ? "" : `${t.error.type}: `}${t.error.message}`,
    ]);
    io.out(table(["TASK", "STATUS", "ATTEMPT", "QUEUE", "WORKER", "DURATION", "ERROR"], rows));
    // Why a queued task has not started (a rate limit, a paused queue, …): the table has no room for it.
    for (const t of run.tasks) {
      if (t.status === TaskStatus.QUEUED && t.waitingReason !== "")
        io.out(`${t.taskId} waits: ${t.waitingReason}\n`);
    }
    if (run.status === RunStatus.SUCCEEDED) io.out(`output: ${compactJson(fromValue(run.output))}\n`);
    return 0;
  },
};
