/**
 * Runs a worker from a module of handlers:
 * `node --import tsx/esm workers/typescript/src/bin.ts --address 127.0.0.1:7233 --queue q --handlers ./handlers.ts`.
 */
import { readFileSync } from "node:fs";
import { type CliArgs, parseCliArgs, usage } from "./cli-args.js";
import { loadHandlers } from "./load-handlers.js";
import { createDefaultLogger } from "./logger.js";
import { createWorkerTransport } from "./transport.js";
import { Worker } from "./worker.js";

async function main(): Promise<number> {
  let args: CliArgs | "help";
  try {
    args = parseCliArgs(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n\n${usage}\n`);
    return 2;
  }
  if (args === "help") {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const logger = createDefaultLogger();
  const { handlers: handlersPath, tls, ...options } = args;
  const handlers = await loadHandlers(handlersPath);
  const transport =
    tls === undefined
      ? undefined
      : createWorkerTransport({
          address: /^https?:\/\//.test(options.address) ? options.address : `https://${options.address}`,
          token: options.token,
          nodeOptions: {
            ...(tls.ca === undefined ? {} : { ca: readFileSync(tls.ca) }),
            ...(tls.cert === undefined ? {} : { cert: readFileSync(tls.cert) }),
            ...(tls.key === undefined ? {} : { key: readFileSync(tls.key) }),
          },
        });
  const worker = new Worker({
    ...options,
    handlers,
    logger,
    ...(transport === undefined ? {} : { transport }),
  });
  worker.installSignalHandlers();
  await worker.run();
  return 0;
}

main().then(
  // Exit explicitly: tasks abandoned at shutdown may still hold the event loop.
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`weft-worker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
