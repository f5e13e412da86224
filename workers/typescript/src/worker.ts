import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { TaskAssignment } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import type { Logger } from "pino";
import { Backoff, sleep } from "./backoff.js";
import { CompletionBatcher } from "./completion-batcher.js";
import { DaemonHealth } from "./daemon-health.js";
import { addDefaults, type ResolvedWorkerOptions, type WorkerOptions } from "./options.js";
import { TaskExecution } from "./task-execution.js";
import { createWorkerClient, type WorkerClient } from "./worker-client.js";

/** Slack on top of the poll's `wait` before the client gives up on a silent daemon. */
const pollTimeoutMarginMs = 10_000;
/** Most assignments one PollTask may ask for (the daemon's limit). */
const maxTasksPerPoll = 256;

type State = "idle" | "running" | "closing" | "closed";

/**
 * Polls a task queue and runs the tasks' handlers, at most `concurrency` at once, with heartbeats
 * while a handler runs. One poll loop asks for as many tasks as there are free slots and starts each
 * assignment as it arrives; no poll is outstanding while every slot is busy. Outputs go out batched
 * (CompleteTasks), failures with FailTask.
 */
export class Worker {
  private readonly options: ResolvedWorkerOptions;
  private readonly client: WorkerClient;
  private readonly logger: Logger;
  private readonly health: DaemonHealth;
  private readonly polling = new AbortController();
  private readonly completions: CompletionBatcher;
  /** Each started attempt, until its result is reported or given up. */
  private readonly executions = new Map<TaskExecution, Promise<void>>();
  /** Attempts whose handler has not settled yet: the slots in use. */
  private busySlots = 0;
  /** Wakes the poll loop when it waits for a free slot. */
  private slotFreed: (() => void) | undefined;
  private state: State = "idle";
  private polls: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  private forceShutdown: (() => void) | undefined;
  private removeSignalHandlers: (() => void) | undefined;
  private readonly closed: Promise<void>;
  private markClosed: () => void = () => {};

  constructor(options: WorkerOptions) {
    this.options = addDefaults(options);
    this.client = createWorkerClient(this.options.transport);
    this.logger = this.options.logger.child({ queue: this.options.queue, workerId: this.options.workerId });
    this.health = new DaemonHealth(this.logger);
    this.completions = new CompletionBatcher(this.client, this.health, this.logger);
    this.closed = new Promise((resolve) => {
      this.markClosed = resolve;
    });
  }

  /** Identity the worker polls with. */
  get workerId(): string {
    return this.options.workerId;
  }

  /** Starts polling; resolves once the worker is closed. May be called once. */
  async run(): Promise<void> {
    if (this.state !== "idle") {
      if (this.state === "closed") {
        return;
      }
      throw new Error("Worker.run() was already called");
    }
    this.state = "running";
    const { concurrency, handlers } = this.options;
    this.logger.info({ handlers: Object.keys(handlers), concurrency }, "worker polling");
    this.polls = this.pollLoop();
    await this.closed;
  }

  /**
   * Stops gracefully: stops polling, lets in-flight tasks finish and report within `shutdownGraceMs`,
   * then aborts the signal of those still running and abandons them. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /**
   * Makes SIGTERM and SIGINT close the worker; a second signal abandons in-flight tasks at once.
   * Returns a function that removes the handlers (they are also removed once the worker is closed).
   */
  installSignalHandlers(signals: readonly NodeJS.Signals[] = ["SIGTERM", "SIGINT"]): () => void {
    let received = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      received++;
      if (received === 1) {
        this.logger.info({ signal }, "signal received; closing the worker");
        void this.close();
      } else {
        this.logger.warn({ signal }, "second signal received; abandoning in-flight tasks");
        this.forceShutdown?.();
      }
    };
    for (const signal of signals) {
      process.on(signal, onSignal);
    }
    const remove = (): void => {
      for (const signal of signals) {
        process.off(signal, onSignal);
      }
    };
    this.removeSignalHandlers = remove;
    return remove;
  }

  private async shutdown(): Promise<void> {
    if (this.state === "idle") {
      this.finish();
      return;
    }
    this.state = "closing";
    const graceMs = this.options.shutdownGraceMs;
    this.logger.info({ inFlight: this.executions.size, graceMs }, "worker closing");
    this.polling.abort();
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<"grace over">((resolve) => {
      timer = setTimeout(() => resolve("grace over"), graceMs);
      this.forceShutdown = () => resolve("grace over");
    });
    const drained = this.polls
      .then(() => Promise.all(this.executions.values()))
      .then(() => "drained" as const);
    const outcome = await Promise.race([drained, graceOver]);
    clearTimeout(timer);
    if (outcome === "grace over") {
      for (const execution of this.executions.keys()) {
        execution.abandon(graceMs);
      }
    }
    this.finish();
  }

  private finish(): void {
    this.state = "closed";
    this.removeSignalHandlers?.();
    this.logger.info("worker closed");
    this.markClosed();
  }

  private async pollLoop(): Promise<void> {
    const { queue, workerId, handlers, concurrency, pollWaitMs, retryInitialDelayMs, retryMaxDelayMs } =
      this.options;
    const request = { queue, workerId, handlers: Object.keys(handlers), wait: durationFromMs(pollWaitMs) };
    const backoff = new Backoff(retryInitialDelayMs, retryMaxDelayMs);
    while (this.state === "running") {
      const freeSlots = concurrency - this.busySlots;
      if (freeSlots <= 0) {
        await this.waitForSlot();
        continue;
      }
      let assignments: TaskAssignment[];
      try {
        const response = await this.client.pollTask(
          { ...request, maxTasks: Math.min(freeSlots, maxTasksPerPoll) },
          { signal: this.polling.signal, timeoutMs: pollWaitMs + pollTimeoutMarginMs },
        );
        this.health.ok();
        backoff.reset();
        const { assignment, moreAssignments } = response;
        assignments = assignment === undefined ? moreAssignments : [assignment, ...moreAssignments];
      } catch (err) {
        if (this.state !== "running") {
          break;
        }
        this.health.failed("PollTask", err);
        await sleep(backoff.next(), this.polling.signal);
        continue;
      }
      // Assignments that arrive while closing are still run: this worker holds their leases.
      for (const assignment of assignments) {
        this.start(assignment);
      }
    }
  }

  /**
   * Resolves once a slot frees or polling stops, one turn of the event loop later: handlers that
   * settle together free their slots for one poll instead of a poll each.
   */
  private waitForSlot(): Promise<void> {
    const { signal } = this.polling;
    return new Promise((resolve) => {
      const wake = (): void => {
        this.slotFreed = undefined;
        signal.removeEventListener("abort", wake);
        setImmediate(resolve);
      };
      this.slotFreed = wake;
      signal.addEventListener("abort", wake, { once: true });
    });
  }

  private start(assignment: TaskAssignment): void {
    this.busySlots++;
    const execution = new TaskExecution(assignment, {
      client: this.client,
      options: this.options,
      health: this.health,
      completions: this.completions,
      logger: this.logger,
      onHandlerSettled: () => {
        this.busySlots--;
        this.slotFreed?.();
      },
    });
    this.executions.set(
      execution,
      execution.run().finally(() => this.executions.delete(execution)),
    );
  }
}
