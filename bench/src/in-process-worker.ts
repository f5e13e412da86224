import { createWorkerTransport, type TaskContext, Worker } from "@weft/worker";
import { countAcknowledged } from "./acknowledged.js";

/** A handler call as seen in the bench process (performance.now() times). */
export interface HandlerCall {
  runId: string;
  taskId: string;
  runInput: unknown;
  start: number;
  end: number;
}

/**
 * A @weft/worker Worker in the bench process itself, so that handler start and end times share one clock
 * with the bench's own calls. `onStart`, `onEnd` and `onCompleted` (a completion acknowledged) are hooks.
 */
export class InProcessWorker {
  onStart: (call: HandlerCall) => void = () => {};
  onEnd: (call: HandlerCall) => void = () => {};
  onCompleted: () => void = () => {};
  private readonly worker: Worker;
  private running: Promise<void> | undefined;

  constructor(address: string, queue: string, concurrency: number) {
    const completed = countAcknowledged(() => this.onCompleted());
    this.worker = new Worker({
      queue,
      concurrency,
      workerId: `bench-inproc-${process.pid}`,
      transport: createWorkerTransport({ address, interceptors: [completed] }),
      shutdownGraceMs: 2000,
      handlers: {
        noop: (_input, ctx: TaskContext) => {
          const call: HandlerCall = {
            runId: ctx.runId,
            taskId: ctx.taskId,
            runInput: ctx.runInput,
            start: performance.now(),
            end: 0,
          };
          this.onStart(call);
          call.end = performance.now();
          this.onEnd(call);
          return null;
        },
      },
    });
  }

  /** Starts polling. */
  start(): void {
    this.running = this.worker.run();
  }

  async close(): Promise<void> {
    await this.worker.close();
    await this.running;
  }
}
