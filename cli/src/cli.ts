import { readFileSync } from "node:fs";
import { createWeftClient, type TlsOptions, type WeftClient, type WeftClientOptions } from "@weft/sdk";
import { type Command, type CommandContext, GLOBAL_HELP, GLOBAL_OPTIONS } from "./command.js";
import { cancel } from "./commands/cancel.js";
import { queuesCircuit } from "./commands/circuit.js";
import { dev } from "./commands/dev.js";
import { failedDiscard, failedGet, failedList, failedRetry } from "./commands/failed.js";
import { queuesList } from "./commands/queues.js";
import { runsResume } from "./commands/resume.js";
import { runsGet, runsList } from "./commands/runs.js";
import {
  schedulesBackfill,
  schedulesCreate,
  schedulesGet,
  schedulesList,
  schedulesPause,
  schedulesRemove,
  schedulesResume,
  schedulesTrigger,
} from "./commands/schedules.js";
import { trigger } from "./commands/trigger.js";
import { watch } from "./commands/watch.js";
import { workflowsGet, workflowsList, workflowsSubmit } from "./commands/workflows.js";
import { connectionProblem, type Target } from "./connection-problem.js";
import { ExitCode, errorLine, exitCodeOf, UsageError } from "./exit-codes.js";
import type { Io } from "./io.js";
import { type ParsedLine, parseOptions } from "./parse-options.js";

/** Every command, in the order `weft --help` lists them. */
export const COMMANDS: Command[] = [
  dev,
  workflowsSubmit,
  workflowsList,
  workflowsGet,
  trigger,
  watch,
  runsList,
  runsGet,
  runsResume,
  cancel,
  failedList,
  failedGet,
  failedRetry,
  failedDiscard,
  queuesList,
  queuesCircuit,
  schedulesCreate,
  schedulesList,
  schedulesGet,
  schedulesPause,
  schedulesResume,
  schedulesRemove,
  schedulesTrigger,
  schedulesBackfill,
];

/** The default weftd address. */
export const DEFAULT_ADDRESS = "127.0.0.1:7233";

const VERSION = "0.1.0";

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.path.join(" ").length));
  const list = COMMANDS.map((c) => `  ${c.path.join(" ").padEnd(width)}  ${c.summary}`).join("\n");
  return `weft: the command line of Weft

Usage: weft <command> [arguments] [options]

Commands:
${list}

Start here: \`weft dev\` runs Redis, weftd and the example workers on this machine.
\`weft <command> --help\` describes a command.

${GLOBAL_HELP}

Exit codes: 0 success, 1 run failed or cancelled, 2 usage error, 3 not found, 4 weftd unavailable.
`;
}

/** Finds the command named by the first words of `argv`; the rest are its arguments. */
function findCommand(argv: string[]): { command: Command; rest: string[] } | undefined {
  let best: { command: Command; rest: string[] } | undefined;
  for (const command of COMMANDS) {
    if (command.path.every((word, i) => argv[i] === word)) {
      if (best === undefined || command.path.length > best.command.path.length) {
        best = { command, rest: argv.slice(command.path.length) };
      }
    }
  }
  return best;
}

/** The group commands starting with `word` (e.g. `runs`), for `weft runs` without a subcommand. */
function groupHelp(word: string): string | undefined {
  const members = COMMANDS.filter((c) => c.path.length > 1 && c.path[0] === word);
  if (members.length === 0) return undefined;
  const width = Math.max(...members.map((c) => c.path.join(" ").length));
  return `Usage: weft ${word} <${members.map((c) => c.path[1]).join("|")}>\n\n${members
    .map((c) => `  ${c.path.join(" ").padEnd(width)}  ${c.summary}`)
    .join("\n")}\n`;
}

/** Why a file could not be read, in a few words. */
function fileProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES") return "permission denied";
  if (code === "EISDIR") return "it is a folder";
  return errorLine(err);
}

/** Where the client goes: the address as given and the URL it becomes (https with --ca/--cert/--key). */
function target(values: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): Target {
  const address = String(values.address ?? env.WEFT_ADDRESS ?? DEFAULT_ADDRESS);
  const tls = values.ca !== undefined || values.cert !== undefined || values.key !== undefined;
  const baseUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(address)
    ? address
    : `${tls ? "https" : "http"}://${address}`;
  return { address, baseUrl };
}

/** Client options from the global flags and WEFT_ADDRESS / WEFT_TOKEN. */
function clientOptions(
  values: Record<string, string | boolean | undefined>,
  env: NodeJS.ProcessEnv,
): WeftClientOptions {
  const { address } = target(values, env);
  const token = values.token ?? env.WEFT_TOKEN;
  const file = (flag: string) => {
    if (values[flag] === undefined) return {};
    const path = String(values[flag]);
    try {
      return { [flag]: readFileSync(path) };
    } catch (err) {
      throw new UsageError(`--${flag}: cannot read ${path}: ${fileProblem(err)}`);
    }
  };
  const tls: TlsOptions = { ...file("ca"), ...file("cert"), ...file("key") };
  return {
    address,
    ...(token === undefined || token === "" ? {} : { token: String(token) }),
    ...(Object.keys(tls).length === 0 ? {} : { tls }),
    timeoutMs: 15_000,
  };
}

/**
 * Runs `weft` with `argv` (the arguments after the program name) and resolves with the exit code.
 * Errors are printed on one line to stderr.
 */
export async function runCli(argv: string[], io: Io, signal: AbortSignal): Promise<number> {
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
    const topic = argv[0] === "help" ? argv.slice(1) : [];
    const found = topic.length > 0 ? findCommand(topic) : undefined;
    if (found !== undefined) io.out(`${found.command.help}\n\n${GLOBAL_HELP}\n`);
    else io.out(mainHelp());
    return argv.length === 0 ? ExitCode.Usage : ExitCode.Ok;
  }
  if (argv[0] === "--version") {
    io.out(`weft ${VERSION}\n`);
    return ExitCode.Ok;
  }
  // Global options may come before the command too (`weft --address X runs ls`).
  const leading: string[] = [];
  while (argv[0]?.startsWith("-") === true && argv[0] !== "--") {
    const flag = argv[0];
    const name = flag.startsWith("--") ? flag.slice(2).split("=")[0] : undefined;
    const spec = name === undefined ? undefined : GLOBAL_OPTIONS[name as keyof typeof GLOBAL_OPTIONS];
    if (spec === undefined) {
      io.err(`weft: unknown option ${flag.split("=")[0]} before the command; see weft --help\n`);
      return ExitCode.Usage;
    }
    const takesValue = spec.type === "string" && !flag.includes("=");
    leading.push(...argv.slice(0, takesValue ? 2 : 1));
    argv = argv.slice(takesValue ? 2 : 1);
  }
  if (argv.length === 0) {
    io.err("weft: a command is required after the options; see weft --help\n");
    return ExitCode.Usage;
  }
  const found = findCommand(argv);
  if (found === undefined) {
    const group = groupHelp(argv[0] ?? "");
    if (group !== undefined && (argv.length === 1 || argv[1] === "--help" || argv[1] === "-h")) {
      io.out(group);
      return argv.length === 1 ? ExitCode.Usage : ExitCode.Ok;
    }
    const what =
      group === undefined
        ? `unknown command "${argv[0]}"`
        : `unknown command "${argv.slice(0, 2).join(" ")}"`;
    io.err(`weft: ${what}; see weft --help\n`);
    return ExitCode.Usage;
  }
  const { command } = found;
  const rest = [...found.rest, ...leading];
  const name = `weft ${command.path.join(" ")}`;
  let parsed: ParsedLine;
  try {
    parsed = parseOptions(rest, { ...GLOBAL_OPTIONS, ...command.options });
  } catch (err) {
    io.err(`${name}: ${errorLine(err)}; see ${name} --help\n`);
    return ExitCode.Usage;
  }
  if (parsed.values.help === true) {
    io.out(`${command.help}\n\n${GLOBAL_HELP}\n`);
    return ExitCode.Ok;
  }
  let client: WeftClient | undefined;
  const ctx: CommandContext = {
    args: parsed.positionals,
    options: parsed.values,
    io,
    signal,
    client() {
      client ??= createWeftClient(clientOptions(parsed.values, io.env));
      return client;
    },
  };
  try {
    return await command.run(ctx);
  } catch (err) {
    const problem = await connectionProblem(err, target(parsed.values, io.env));
    if (problem !== undefined) {
      io.err(`weft: ${problem}\n`);
      return ExitCode.Unavailable;
    }
    const hint = err instanceof UsageError ? `; see ${name} --help` : "";
    io.err(`weft: ${errorLine(err)}${hint}\n`);
    return exitCodeOf(err);
  } finally {
    client?.close();
  }
}
