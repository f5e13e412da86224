import type { Command } from "../command.js";
import { followRun } from "../follow-run.js";
import { oneArg } from "./args.js";

/** `weft watch RUN_ID`. */
export const watch: Command = {
  path: ["watch"],
  summary: "follow a run live until it finishes",
  help: `Usage: weft watch RUN_ID [--json]

Follows a run until it finishes. On a terminal: a live view with one line per task (status,
attempt, duration), a progress bar, then the run's output or its errors. Otherwise, or with
--json: every event of the run so far and to come, one JSON object per line.
Reconnects by itself if weftd restarts. Exit code 0 when the run succeeded, 1 when it failed,
timed out or was cancelled.`,
  options: {},
  run: (ctx) => followRun(ctx, oneArg(ctx.args, "RUN_ID")),
};
