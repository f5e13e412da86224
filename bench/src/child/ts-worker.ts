/**
 * The TypeScript worker of `pnpm bench` (scenario "worker runtimes"), started like the Python and Go
 * ones: one queue, a no-op handler named "noop", the given concurrency, and a Work stream unless
 * --no-stream. Runs until SIGTERM or SIGINT.
 */
import { parseArgs } from "node:util";
import { Worker } from "@weft/worker";

const { values } = parseArgs({
  options: {
    address: { type: "string" },
    queue: { type: "string" },
    concurrency: { type: "string", default: "64" },
    "no-stream": { type: "boolean", default: false },
  },
});
const worker = new Worker({
  address: values.address ?? "",
  queue: values.queue ?? "",
  concurrency: Number(values.concurrency),
  stream: values["no-stream"] !== true,
  handlers: { noop: () => null },
});
for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => void worker.close());
await worker.run();
