import { parseArgs } from "node:util";

/** Usage of the `weft-worker` command. */
export const usage = `Usage: node --import tsx/esm workers/typescript/src/bin.ts --address <host:port> --queue <queue> --handlers <module> [options]

  --address <host:port|url>       daemon address (env WEFT_ADDRESS)
  --queue <name>                  task queue to poll
  --handlers <path>               module exporting handlers: \`export const handlers = {...}\`,
                                  a default-exported object, or named function exports
  --concurrency <n>               most tasks run at once (default 10)
  --worker-id <id>                identity shown on task runs (default <hostname>:<pid>)
  --poll-wait-ms <ms>             long-poll wait (default 20000)
  --heartbeat-interval-ms <ms>    automatic heartbeat interval (default: heartbeat timeout / 3)
  --shutdown-grace-ms <ms>        grace period on SIGTERM/SIGINT (default 30000)
  --token <token>                 bearer token (env WEFT_TOKEN)
  --ca <file>                     PEM CA that signed the daemon's certificate: connect with TLS
  --cert <file>, --key <file>     PEM client certificate and key, for mTLS
  --no-stream                     poll with PollTask and complete with CompleteTasks instead of one
                                  Work stream (for a proxy that does not carry bidirectional streams)
  --help                          print this help

Logs are JSON lines on stdout (level from WEFT_LOG_LEVEL); "worker polling" is logged when polling starts.`;

/** Parsed command line of the `weft-worker` command. */
export interface CliArgs {
  address: string;
  queue: string;
  handlers: string;
  concurrency?: number;
  workerId?: string;
  pollWaitMs?: number;
  heartbeatIntervalMs?: number;
  shutdownGraceMs?: number;
  token?: string;
  /** TLS files: CA to trust, and a client certificate and key for mTLS. */
  tls?: { ca?: string; cert?: string; key?: string };
  /** false with --no-stream: poll instead of one Work stream. */
  stream?: false;
}

/** Parses `argv`; returns `"help"` for --help. @throws Error with a message naming the bad argument. */
export function parseCliArgs(argv: string[], env: NodeJS.ProcessEnv): CliArgs | "help" {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      address: { type: "string" },
      queue: { type: "string" },
      handlers: { type: "string" },
      concurrency: { type: "string" },
      "worker-id": { type: "string" },
      "poll-wait-ms": { type: "string" },
      "heartbeat-interval-ms": { type: "string" },
      "shutdown-grace-ms": { type: "string" },
      token: { type: "string" },
      ca: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      "no-stream": { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    return "help";
  }
  const address = values.address ?? env.WEFT_ADDRESS;
  const token = values.token ?? env.WEFT_TOKEN;
  const args: CliArgs = {
    address: required("--address", address),
    queue: required("--queue", values.queue),
    handlers: required("--handlers", values.handlers),
  };
  const numbers = {
    concurrency: values.concurrency,
    pollWaitMs: values["poll-wait-ms"],
    heartbeatIntervalMs: values["heartbeat-interval-ms"],
    shutdownGraceMs: values["shutdown-grace-ms"],
  };
  for (const [key, text] of Object.entries(numbers) as [keyof typeof numbers, string | undefined][]) {
    if (text !== undefined) {
      args[key] = toNumber(key, text);
    }
  }
  if (values["worker-id"] !== undefined) {
    args.workerId = values["worker-id"];
  }
  if (token !== undefined && token !== "") {
    args.token = token;
  }
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new Error("--cert and --key go together");
  }
  if (values.ca !== undefined || values.cert !== undefined) {
    args.tls = { ca: values.ca, cert: values.cert, key: values.key };
  }
  if (values["no-stream"] === true) {
    args.stream = false;
  }
  return args;
}

function required(flag: string, value: string | undefined): string {
  if (value === undefined || value === "") {
    throw new Error(`${flag} is required`);
  }
  return value;
}

function toNumber(name: string, text: string): number {
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value)) {
    throw new Error(`${name} must be a number, got "${text}"`);
  }
  return value;
}
