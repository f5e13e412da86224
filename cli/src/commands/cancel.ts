import { toJson } from "@bufbuild/protobuf";
import { RunStatus } from "@weft/sdk";
import { RunSchema } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { Command } from "../command.js";
import { runStatusName } from "../format.js";
import { oneArg } from "./args.js";

/** `weft cancel RUN_ID`. */
export const cancel: Command = {
  path: ["cancel"],
  summary: "cancel a run",
  help: `Usage: weft cancel RUN_ID [--reason TEXT]

Cancels a run: queued and delayed tasks are removed, running tasks are told on their next
heartbeat, and the run ends CANCELLED. Idempotent: a finished run is left as it is.

Options:
  --reason <text>   why, recorded on the run and its events`,
  options: { reason: { type: "string" } },
  async run({ args, options, io, client }) {
    const runId = oneArg(args, "RUN_ID");
    const run = await client().cancel(runId, options.reason === undefined ? "" : String(options.reason));
    if (options.json === true) io.out(`${JSON.stringify(toJson(RunSchema, run))}\n`);
    else if (run.status === RunStatus.CANCELLED) {
      io.out(`run ${run.id} cancelled${run.error === "" ? "" : `: ${run.error}`}\n`);
    } else io.out(`run ${run.id} already finished: ${runStatusName(run.status)}\n`);
    return 0;
  },
};
