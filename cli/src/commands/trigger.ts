import { readFile } from "node:fs/promises";
import { toJson } from "@bufbuild/protobuf";
import type { JsonValue } from "@weft/sdk";
import { RunSchema } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { Command, CommandContext } from "../command.js";
import { UsageError } from "../exit-codes.js";
import { followRun } from "../follow-run.js";
import { runStatusName } from "../format.js";
import { oneArg, positiveInt } from "./args.js";

function parseInput(text: string, where: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new UsageError(`${where} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Runs per BatchTrigger call of `weft trigger --each`. */
const BATCH = 1000;

/** `weft trigger WORKFLOW --each FILE`: one run per line, in BatchTrigger calls. */
async function triggerEach(
  ctx: CommandContext,
  workflow: string,
  file: string,
  version: number,
  key: string,
): Promise<number> {
  const { io, options } = ctx;
  const inputs: { line: number; input: JsonValue }[] = [];
  (await readFile(file, "utf8")).split("\n").forEach((text, i) => {
    if (text.trim() !== "") inputs.push({ line: i + 1, input: parseInput(text, `${file}:${i + 1}`) });
  });
  if (inputs.length === 0) throw new UsageError(`${file} has no line to start a run with`);
  const client = ctx.client();
  let started = 0;
  for (let from = 0; from < inputs.length; from += BATCH) {
    const chunk = inputs.slice(from, from + BATCH);
    const results = await client.triggerMany(
      chunk.map(({ line, input }) => ({
        workflow,
        input,
        version,
        idempotencyKey: key === "" ? "" : `${key}:${line}`,
      })),
    );
    results.forEach(({ run, created }, i) => {
      const line = (chunk[i] as { line: number }).line;
      if (created) started++;
      if (options.json === true)
        io.out(`${JSON.stringify({ line, created, run: toJson(RunSchema, run) })}\n`);
      else if (options.quiet === true) io.out(`${run.id}\n`);
      else io.out(`line ${line}: run ${run.id} ${created ? "started" : "already exists"}\n`);
    });
  }
  if (options.json !== true && options.quiet !== true) {
    io.out(`${started} runs started, ${inputs.length - started} already existed\n`);
  }
  return 0;
}

/** `weft trigger WORKFLOW`. */
export const trigger: Command = {
  path: ["trigger"],
  summary: "start a run of a workflow",
  help: `Usage: weft trigger WORKFLOW [--input JSON | --input-file FILE | --each FILE] [--idempotency-key K] [--watch]

Starts a run of WORKFLOW (its latest version unless --version is given) and prints its id.
The same --idempotency-key for the same workflow returns the same run instead of a second one.

With --each, starts one run per line of a JSON Lines file (each line the input of one run, blank
lines skipped), ${BATCH} runs per BatchTrigger call, and prints one line per run; with
--idempotency-key K, line n gets the key "K:n", so running the same file again starts nothing twice.

Options:
  --input <json>            run input, any JSON value (default null)
  --input-file <file>       read the run input from a JSON file
  --each <file>             start one run per line of a JSON Lines file
  --idempotency-key <key>   start at most one run per key
  --version <n>             run this version of the workflow (default: the latest)
  --watch                   follow the run until it finishes (exit 1 if it does not succeed)
  -q, --quiet               print only the run id (with --each: one per line)`,
  options: {
    input: { type: "string" },
    "input-file": { type: "string" },
    each: { type: "string" },
    "idempotency-key": { type: "string" },
    version: { type: "string" },
    watch: { type: "boolean" },
    quiet: { type: "boolean", short: "q" },
  },
  async run(ctx) {
    const { args, options, io } = ctx;
    const workflow = oneArg(args, "WORKFLOW");
    if (options.input !== undefined && options["input-file"] !== undefined) {
      throw new UsageError("give --input or --input-file, not both");
    }
    const version = options.version === undefined ? 0 : positiveInt(String(options.version), "--version");
    const key = options["idempotency-key"] === undefined ? "" : String(options["idempotency-key"]);
    if (options.each !== undefined) {
      if (options.input !== undefined || options["input-file"] !== undefined || options.watch === true) {
        throw new UsageError("--each takes no --input, --input-file or --watch");
      }
      return triggerEach(ctx, workflow, String(options.each), version, key);
    }
    let input: JsonValue = null;
    if (options.input !== undefined) input = parseInput(String(options.input), "--input");
    if (options["input-file"] !== undefined) {
      const file = String(options["input-file"]);
      input = parseInput(await readFile(file, "utf8"), file);
    }
    const { run, created } = await ctx.client().trigger(workflow, input, { idempotencyKey: key, version });
    const watch = options.watch === true;
    // With --watch and no terminal, stdout carries only the events: the run line goes to stderr.
    const say = watch && !io.isTTY ? io.err : io.out;
    if (options.json === true && !watch) {
      io.out(`${JSON.stringify({ created, run: toJson(RunSchema, run) })}\n`);
    } else if (options.quiet === true) {
      say(`${run.id}\n`);
    } else if (created) {
      say(`run ${run.id} started: workflow ${run.workflow} version ${run.workflowVersion}\n`);
    } else {
      say(`run ${run.id} already exists for idempotency key "${key}" (${runStatusName(run.status)})\n`);
    }
    return watch ? followRun(ctx, run.id) : 0;
  },
};
