/**
 * A bench child process running @weft/worker Workers with a no-op (or sleeping) handler. Completions are
 * counted by a Connect interceptor on CompleteTask and CompleteTasks, i.e. when weftd acknowledged them.
 */
import { createWorkerTransport, Worker } from "@weft/worker";
import { countAcknowledged } from "../acknowledged.js";
import { CompletionCounter, onParentMessage, send } from "./completion-counter.js";
import type { WeftWorkerChildConfig } from "./protocol.js";

const config = JSON.parse(process.env.BENCH_CHILD ?? "{}") as WeftWorkerChildConfig;
const counter = new CompletionCounter();

const countCompletions = countAcknowledged(() => counter.completed());

const sleepMs = config.sleepMs;
const handlers = {
  noop:
    sleepMs > 0 ? () => new Promise<null>((resolve) => setTimeout(() => resolve(null), sleepMs)) : () => null,
};

const per = Math.max(1, Math.floor(config.concurrency / config.addresses.length));
const workers = config.addresses.map(
  (address, i) =>
    new Worker({
      queue: config.queue,
      handlers,
      concurrency: i === 0 ? config.concurrency - per * (config.addresses.length - 1) : per,
      workerId: `bench-${process.pid}-${i}`,
      transport: createWorkerTransport({ address, interceptors: [countCompletions] }),
      shutdownGraceMs: 2000,
    }),
);

let started = false;
function start(): void {
  if (started) return;
  started = true;
  for (const worker of workers) {
    worker.run().catch((err: unknown) => send({ t: "error", message: String(err) }));
  }
  send({ t: "ready" });
}

onParentMessage((message) => {
  if (message.t === "expect") {
    counter.expect(message.n);
    send({ t: "armed" });
  } else if (message.t === "start") {
    start();
  } else if (message.t === "stop") {
    void Promise.all(workers.map((w) => w.close())).finally(() => process.exit(0));
  }
});

if (config.deferStart) send({ t: "ready" });
else start();
