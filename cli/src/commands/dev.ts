import { once } from "node:events";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "../command.js";
import { DevError, DevSession } from "../dev/dev-session.js";
import { DEFAULT_PYTHON_VENV } from "../dev/python-venv.js";
import { ExitCode, errorLine } from "../exit-codes.js";

/** `weft dev`. */
export const dev: Command = {
  path: ["dev"],
  summary: "run Redis, weftd and the example workers here, until Ctrl-C",
  help: `Usage: weft dev [--addr HOST:PORT] [--config FILE] [--redis-url URL] [--data-dir DIR]

Runs a complete Weft on this machine: a private redis-server (from PATH, data in DIR/redis),
weftd, and a worker for each example language whose toolchain is here (TypeScript always;
Python when python3 is there, in a virtualenv it makes on first use; Go when go is there,
built on first use; a TypeScript stand-in serves the queue otherwise, and says why).
Submits the example workflows, prints what to run next, and on Ctrl-C (or SIGTERM) stops
everything it started. Logs go to DIR/logs.

Options:
  --addr <host:port>          weftd's API address (default 127.0.0.1:7233)
  --metrics-addr <host:port>  weftd's /metrics address (default 127.0.0.1:9233)
  --config <file>             weftd's configuration file (retry defaults, queues, rate-limit keys)
  --redis-url <url>           use this Redis instead of starting one (env WEFT_REDIS_URL, REDIS_URL)
  --data-dir <dir>            where Redis data and logs go (default .weft/dev)
  --python-venv <dir>         the Python worker's virtualenv (default workers/python/.venv)
  --no-examples               do not submit the example workflows
  --no-workers                do not start the example workers`,
  options: {
    addr: { type: "string" },
    "metrics-addr": { type: "string" },
    "redis-url": { type: "string" },
    "data-dir": { type: "string" },
    config: { type: "string" },
    "python-venv": { type: "string" },
    "no-examples": { type: "boolean" },
    "no-workers": { type: "boolean" },
  },
  async run({ args, options, io, signal }) {
    if (args.length > 0) {
      io.err(`weft dev: unexpected argument "${args[0]}"; see weft dev --help\n`);
      return ExitCode.Usage;
    }
    const config = options.config === undefined ? undefined : resolve(String(options.config));
    if (config !== undefined && !existsSync(config)) {
      io.err(`weft dev: --config: no such file ${String(options.config)}; see weft dev --help\n`);
      return ExitCode.Usage;
    }
    // As weftd does: --redis-url, else WEFT_REDIS_URL, else REDIS_URL; none: a private redis-server.
    const redisUrl = [options["redis-url"], io.env.WEFT_REDIS_URL, io.env.REDIS_URL].find(
      (u) => u !== undefined && u !== "",
    );
    const session = new DevSession(
      {
        addr: String(options.addr ?? "127.0.0.1:7233"),
        metricsAddr: String(options["metrics-addr"] ?? "127.0.0.1:9233"),
        redisUrl: redisUrl === undefined || redisUrl === "" ? undefined : String(redisUrl),
        dataDir: resolve(String(options["data-dir"] ?? ".weft/dev")),
        examples: options["no-examples"] !== true,
        workers: options["no-workers"] !== true,
        config,
        pythonVenv:
          options["python-venv"] === undefined
            ? DEFAULT_PYTHON_VENV
            : resolve(String(options["python-venv"])),
        env: io.env,
      },
      io,
    );
    let code: number = ExitCode.Ok;
    try {
      await session.start(signal);
      io.out(session.summary());
      const crashed = session.crashed();
      const stopped = once(signal, "abort").then(() => undefined);
      const crash = await Promise.race([crashed, stopped]);
      if (crash !== undefined) {
        io.err(`weft dev: ${crash}\n`);
        code = ExitCode.Failed;
      }
    } catch (err) {
      if (!signal.aborted) {
        io.err(`weft dev: ${err instanceof DevError ? err.message : errorLine(err)}\n`);
        code = ExitCode.Failed;
      }
    } finally {
      await session.stop();
    }
    io.out("weft dev stopped.\n");
    return code;
  },
};
