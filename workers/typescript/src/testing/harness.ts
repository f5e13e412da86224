import { randomUUID } from "node:crypto";
import { onTestFinished } from "vitest";
import type { WorkerOptions } from "../options.js";
import { Worker } from "../worker.js";
import { type FakeOptions, FakeWorkerService } from "./fake-worker-service.js";
import { LogCapture } from "./log-capture.js";

/** A worker running against a fresh fake daemon, torn down when the test finishes. */
export interface Harness {
  fake: FakeWorkerService;
  worker: Worker;
  /** The promise returned by `worker.run()`. */
  running: Promise<void>;
  logs: LogCapture;
  queue: string;
}

/** Starts a fake daemon and a worker polling it with fast retries; both stop after the test. */
export async function startHarness(
  options: Partial<WorkerOptions> & Pick<WorkerOptions, "handlers">,
  fakeOptions: FakeOptions = {},
): Promise<Harness> {
  const fake = await FakeWorkerService.start(fakeOptions);
  const logs = new LogCapture();
  const queue = `test-${randomUUID()}`;
  const worker = new Worker({
    address: fake.address,
    queue,
    workerId: "test-worker",
    concurrency: 1,
    shutdownGraceMs: 2_000,
    retryInitialDelayMs: 10,
    retryMaxDelayMs: 100,
    logger: logs.logger,
    ...options,
  });
  const running = worker.run();
  onTestFinished(async () => {
    await worker.close();
    await running;
    await fake.stop();
  });
  return { fake, worker, running, logs, queue };
}
