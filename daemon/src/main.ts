// weftd's command line: parse flags and variables, start the daemon, shut down on SIGTERM/SIGINT.
import { setFlagsFromString } from "node:v8";
import { ConfigError, loadConfig } from "./config.js";
import { type DaemonHandle, startDaemon } from "./daemon.js";
import { createLogger } from "./observability/logger.js";
import { RedisServerMissingError } from "./redis/private-redis.js";
import { shareDefaultAbortReason } from "./server/abort-reason.js";

let parsed: ReturnType<typeof loadConfig>;
try {
  parsed = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`weftd: ${err.message}\n`);
  process.exit(2);
}
if (parsed.help) {
  process.stdout.write(parsed.text);
  process.exit(0);
}

// After each major collection V8 lets the heap grow by up to 4× when collecting looks cheap, so bursts of
// short-lived garbage (a 20,000-task run, a 100,000-task definition, a burst of Triggers) leave RSS at two
// to three times what the live data needs (heap in use after a collection stays under 60 MiB under
// `pnpm bench` load). Letting it grow by at most 2× keeps weftd's peak RSS under 300 MiB in every bench
// scenario for about 10 % more CPU (bench/RESULTS.md). `node --heap-growing-percent=0` restores V8's
// own policy; any value given to node wins.
const heapFlag = "--heap-growing-percent";
if (!process.execArgv.some((arg) => arg.startsWith(heapFlag))) setFlagsFromString(`${heapFlag}=100`);

shareDefaultAbortReason();

const { config } = parsed;
const logger = createLogger({ level: config.logLevel });
process.on("uncaughtException", (err) => {
  logger.fatal({ err }, "uncaught exception: exiting");
  process.exit(1);
});
process.on("unhandledRejection", (err) => {
  logger.fatal({ err }, "unhandled promise rejection: exiting");
  process.exit(1);
});

let daemon: DaemonHandle | undefined;
let stopSignal: NodeJS.Signals | undefined;
const shutDown = (handle: DaemonHandle) => {
  handle.close().then(
    () => process.exit(0),
    (err: unknown) => {
      logger.error({ err }, "weftd did not shut down cleanly");
      process.exit(1);
    },
  );
};
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopSignal !== undefined) {
      logger.warn({ signal }, "second stop signal: exiting now");
      process.exit(1);
    }
    stopSignal = signal;
    logger.info({ signal }, "stop signal received");
    if (daemon !== undefined) shutDown(daemon);
  });
}

process.on("SIGHUP", () => {
  try {
    daemon?.reloadTls();
  } catch (err) {
    logger.error({ err }, "reloading the TLS certificate failed; the previous one stays in use");
  }
});

try {
  daemon = await startDaemon(config, {
    logger,
    // Redis, once it answered, is not what --redis-url says: stop, as weftd would have at startup.
    onFatal: (err) => {
      logger.fatal(err.message);
      const exit = () => process.exit(2);
      if (daemon === undefined) exit();
      else daemon.close().then(exit, exit);
    },
  });
} catch (err) {
  // A Redis that is not what --redis-url says is a configuration mistake: exit 2, as for a bad flag.
  if (err instanceof ConfigError) {
    logger.fatal(err.message);
    process.exit(2);
  }
  if (err instanceof RedisServerMissingError) logger.fatal(err.message);
  else logger.fatal({ err }, "weftd failed to start");
  process.exit(1);
}
// A signal that came in while starting is honoured now that there is something to stop.
if (stopSignal !== undefined) shutDown(daemon);
