import type { WeftClient } from "@weft/sdk";
import type { Io } from "./io.js";

/** Options every command accepts, wherever they appear on the line. */
export const GLOBAL_OPTIONS = {
  address: { type: "string" },
  token: { type: "string" },
  ca: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** Help lines of the global options, appended to every command's help. */
export const GLOBAL_HELP = `Global options:
  --address <host:port|url>  weftd address (env WEFT_ADDRESS; default 127.0.0.1:7233)
  --token <token>            bearer token (env WEFT_TOKEN)
  --ca <file>                PEM CA that signed weftd's certificate (implies TLS)
  --cert <file> --key <file> PEM client certificate and key, for mTLS (implies TLS)
  --json                     machine-readable output
  -h, --help                 show this help`;

/** What a command gets to run with. */
export interface CommandContext {
  /** Positional arguments after the command's name. */
  args: string[];
  /** Parsed options (strings and booleans), by long name. */
  options: Record<string, string | boolean | undefined>;
  /** Output streams. */
  io: Io;
  /** A client for `--address`, created on first use. */
  client(): WeftClient;
  /** Aborted on Ctrl-C / SIGTERM. */
  signal: AbortSignal;
}

/** One `weft` command. */
export interface Command {
  /** Words that select it, e.g. `["runs", "ls"]`. */
  path: string[];
  /** One line for the command list. */
  summary: string;
  /** Usage line and the command's own options, shown by --help. */
  help: string;
  /** Options besides the global ones, in node:util parseArgs form. */
  options: Record<string, { type: "string" | "boolean"; short?: string }>;
  /** Runs the command; resolves with the exit code. */
  run(ctx: CommandContext): Promise<number>;
}
