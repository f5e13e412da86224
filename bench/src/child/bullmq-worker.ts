/** A bench child process running a raw BullMQ Worker with a no-op processor: the ceiling of scenario 1. */
import { Worker } from "bullmq";
import { Redis } from "ioredis";
import { CompletionCounter, onParentMessage, send } from "./completion-counter.js";
import type { BullmqWorkerChildConfig } from "./protocol.js";

const config = JSON.parse(process.env.BENCH_CHILD ?? "{}") as BullmqWorkerChildConfig;
const counter = new CompletionCounter();
const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });

const worker = new Worker(config.queue, async () => null, {
  connection,
  prefix: config.prefix,
  concurrency: config.concurrency,
});
worker.on("completed", () => counter.completed());
worker.on("error", (err) => send({ t: "error", message: String(err) }));

onParentMessage((message) => {
  if (message.t === "expect") {
    counter.expect(message.n);
    send({ t: "armed" });
  } else if (message.t === "stop") {
    void worker.close().finally(() => process.exit(0));
  }
});

void worker.waitUntilReady().then(() => send({ t: "ready" }));
