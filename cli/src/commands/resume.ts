import { toJson } from "@bufbuild/protobuf";
import { RunSchema } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { Command } from "../command.js";
import { followRun } from "../follow-run.js";
import { runStatusName } from "../format.js";
import { oneArg } from "./args.js";

/** `weft runs resume RUN_ID`. */
export const runsResume: Command = {
  path: ["runs", "resume"],
  summary: "resume a failed, cancelled or timed-out run under the same id",
  help: `Usage: weft runs resume RUN_ID [--from-task TASK] [--reason TEXT] [--idempotency-key KEY] [--watch]

Carries on a run that ended FAILED, CANCELLED or TIMED_OUT, under the same id and workflow version:
its failed, cancelled and skipped tasks (and what depends on them) run again with fresh attempts;
the tasks that succeeded keep their outputs and do not run again. The command resumes the finish
it reads: if someone resumed the run meanwhile, it says so and changes nothing.

Options:
  --from-task <task>        also run again this task and its descendants, even if they succeeded
  --reason <text>           recorded in the run's RUN_RESUMED event
  --idempotency-key <key>   resumes with one key resume the run once
  --watch                   follow the run until it finishes (exit code 0 when it succeeds)`,
  options: {
    "from-task": { type: "string" },
    reason: { type: "string" },
    "idempotency-key": { type: "string" },
    watch: { type: "boolean" },
  },
  async run(ctx) {
    const { args, options, io } = ctx;
    const runId = oneArg(args, "RUN_ID");
    const client = ctx.client();
    // Naming the finish read here: two operators resuming at once make one resume.
    const { resumeCount } = await client.getRun(runId);
    const r = await client.resumeRun(runId, {
      resumeCount,
      ...(options["from-task"] === undefined ? {} : { fromTask: String(options["from-task"]) }),
      ...(options.reason === undefined ? {} : { reason: String(options.reason) }),
      ...(options["idempotency-key"] === undefined
        ? {}
        : { idempotencyKey: String(options["idempotency-key"]) }),
    });
    if (options.json === true && options.watch !== true) {
      io.out(
        `${JSON.stringify({ resumed: r.resumed, queuedTasks: r.queuedTasks, resetTasks: r.resetTasks, run: toJson(RunSchema, r.run) })}\n`,
      );
      return 0;
    }
    if (options.json !== true) {
      io.out(
        r.resumed
          ? `run ${runId} resumed: ${r.resetTasks} tasks run again (queued now: ${r.queuedTasks.join(", ") || "none"})\n`
          : `run ${runId} was already resumed (it is ${runStatusName(r.run.status)}); nothing changed\n`,
      );
    }
    if (options.watch === true) return followRun(ctx, runId);
    return 0;
  },
};
