/**
 * A worker of the peer scenario: @weft/worker against weftd, or a BullMQ Worker on the peer's queue,
 * with the same no-op handler. A task whose input asks for it (`{ lat: true }`, the latency shape)
 * returns the time it started (ms since the epoch, sub-millisecond), which the client reads from the
 * result it waits for: trigger → start needs no clock but the machine's.
 */
import type { JsonValue } from "@bufbuild/protobuf";
import { Worker as WeftWorker } from "@weft/worker";
import { Worker as BullWorker } from "bullmq";
import { Redis } from "ioredis";
import { onParentMessage, send } from "./completion-counter.js";
import type { PeerWorkerChildConfig } from "./protocol.js";

const config = JSON.parse(process.env.BENCH_CHILD ?? "{}") as PeerWorkerChildConfig;

/** What both workers' handler returns. */
function handle(input: unknown): number | null {
  const lat = typeof input === "object" && input !== null && (input as { lat?: unknown }).lat === true;
  return lat ? performance.timeOrigin + performance.now() : null;
}

let close: () => Promise<unknown>;
if (config.kind === "weft") {
  const worker = new WeftWorker({
    address: config.address,
    queue: config.queue,
    concurrency: config.concurrency,
    workerId: `peer-${process.pid}`,
    handlers: { noop: (_input: JsonValue, ctx) => handle(ctx.runInput) },
    shutdownGraceMs: 2000,
  });
  worker.run().catch((err: unknown) => send({ t: "error", message: String(err) }));
  close = () => worker.close();
  send({ t: "ready" });
} else {
  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const worker = new BullWorker(config.queue, async (job) => handle(job.data), {
    connection,
    prefix: config.prefix,
    concurrency: config.concurrency,
  });
  worker.on("error", (err) => send({ t: "error", message: String(err) }));
  close = () => worker.close();
  void worker.waitUntilReady().then(() => send({ t: "ready" }));
}

onParentMessage((message) => {
  if (message.t === "stop") void close().finally(() => process.exit(0));
});
