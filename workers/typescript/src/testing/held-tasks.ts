import type { TaskHandler } from "../handler.js";
import { type Deferred, deferred, within } from "./async.js";

/** A handler whose calls each wait until the test releases them, by run id; returns the run id. */
export class HeldTasks {
  /** Run ids in the order their handlers started. */
  readonly started: string[] = [];
  /** Handlers running now, and the most seen at once. */
  running = 0;
  maxRunning = 0;
  private readonly held = new Map<string, Deferred<void>>();

  readonly handler: TaskHandler = async (_input, ctx) => {
    const release = deferred();
    this.held.set(ctx.runId, release);
    this.started.push(ctx.runId);
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    await within(release.promise, `the test to release the task of run ${ctx.runId}`, 10_000);
    this.running--;
    return ctx.runId;
  };

  /** Lets the handler of `runId`'s task return. */
  release(...runIds: string[]): void {
    for (const runId of runIds) {
      const release = this.held.get(runId);
      if (release === undefined) {
        throw new Error(`the task of run ${runId} has not started`);
      }
      release.resolve();
    }
  }
}
