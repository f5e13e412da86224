import { toJson } from "@bufbuild/protobuf";
import { Code, formatDuration, fromDuration, WeftError } from "@weft/sdk";
import { QueueSchema } from "@weft/sdk/gen/weft/v1/admin_service_pb.js";
import type { Command } from "../command.js";
import { UsageError } from "../exit-codes.js";
import { table } from "../format.js";
import { circuitsSummary } from "./circuit.js";

/** `weft queues ls`. */
export const queuesList: Command = {
  path: ["queues", "ls"],
  summary: "list task queues with their counts and limits",
  help: `Usage: weft queues ls

Lists the task queues weftd has seen: tasks waiting, active, delayed, failed and completed,
whether the queue is paused, its concurrency and rate limits, and its circuit breakers (open or
half-open ones named; weft queues circuit QUEUE shows them).`,
  options: {},
  async run({ args, options, io, client }) {
    if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
    const rows: string[][] = [];
    try {
      for await (const q of client().listQueues()) {
        if (options.json === true) io.out(`${JSON.stringify(toJson(QueueSchema, q))}\n`);
        const window = q.rateLimit?.duration;
        const rate =
          q.rateLimit === undefined || window === undefined
            ? "-"
            : `${q.rateLimit.max}/${formatDuration(fromDuration(window))}`;
        rows.push([
          q.name,
          String(q.waiting),
          String(q.active),
          String(q.delayed),
          String(q.failed),
          String(q.completed),
          q.paused ? "yes" : "no",
          q.concurrency === 0 ? "-" : String(q.concurrency),
          rate,
          circuitsSummary(q),
        ]);
      }
    } catch (err) {
      if (err instanceof WeftError && err.code === Code.Unimplemented) {
        throw new WeftError(
          "this weftd has no admin API (weft.v1.AdminService): queues cannot be listed",
          err.code,
        );
      }
      throw err;
    }
    if (options.json === true) return 0;
    io.out(
      rows.length === 0
        ? "no queues\n"
        : table(
            [
              "QUEUE",
              "WAITING",
              "ACTIVE",
              "DELAYED",
              "FAILED",
              "COMPLETED",
              "PAUSED",
              "CONCURRENCY",
              "RATE",
              "CIRCUIT",
            ],
            rows,
          ),
    );
    return 0;
  },
};
