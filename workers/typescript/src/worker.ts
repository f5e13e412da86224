import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { TaskAssignment } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import type { Logger } from "pino";
import { Backoff, sleep } from "./backoff.js";
import { CompletionBatcher } from "./completion-batcher.js";
import { DaemonHealth } from "./daemon-health.js";
import { addDefaults, type ResolvedWorkerOptions, type WorkerOptions } from "./options.js";
import { TaskExecution } from "./task-execution.js";
import { WorkSession } from "./work-session.js";
import { createWorkerClient, type WorkerClient } from "./worker-client.js";

/** Slack on top of the poll's `wait` before the client gives up on a silent daemon. */
const pollTimeoutMarginMs = 10_000;
/** Most assignments one PollTask may ask for (the daemon's limit). */
const maxTasksPerPoll = 256;

type State = "idle" | "running" | "closing" | "closed";

/**
 * Takes tasks of a queue and runs their handlers, at most `concurrency` at once, with heartbeats
 * while a handler runs. By default one Work stream carries both ways: credits for the free slots
 * out, assignments in, outputs out, answers in. With `stream: false` (or against a daemon without
 * Work) one poll loop asks PollTask for as many tasks as there are free slots, with no poll
 * outstanding while every slot is busy, and outputs go out batched (CompleteTasks). Failures go
 * with FailTask.
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
  /** The Work stream open, if any. */
  private session: WorkSession | undefined;
  /** Delivers an output on the Work stream while one is open, else with CompleteTasks. */
  private readonly outputs: Pick<CompletionBatcher, "complete"> = {
    complete: (leaseId, output, policy) =>
      this.session?.complete(leaseId, output, policy) ?? this.completions.complete(leaseId, output, policy),
  };
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
    this.polls = this.options.stream ? this.streamLoop() : this.pollLoop();
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
   * Takes tasks over Work streams, one at a time, opening a new one with backoff when one fails; a
   * daemon without Work (UNIMPLEMENTED) is polled instead.
   */
  private async streamLoop(): Promise<void> {
    const { queue, workerId, handlers, concurrency, retryInitialDelayMs, retryMaxDelayMs } = this.options;
    const identity = { queue, workerId, handlers: Object.keys(handlers) };
    const backoff = new Backoff(retryInitialDelayMs, retryMaxDelayMs);
    while (this.state === "running") {
      const session = new WorkSession(
        this.client,
        this.completions,
        this.health,
        identity,
        concurrency - this.busySlots,
      );
      this.session = session;
      try {
        await session.run((assignment) => this.start(assignment), this.polling.signal);
        backoff.reset();
      } catch (err) {
        if (this.state !== "running") {
          break;
        }
        if (ConnectError.from(err).code === Code.Unimplemented) {
          this.logger.info("the daemon does not implement Work (an older weftd); polling with PollTask");
          this.session = undefined;
          await this.pollLoop();
          return;
        }
        this.health.failed("Work", err);
        await sleep(backoff.next(), this.polling.signal);
      } finally {
        if (this.session === session) {
          this.session = undefined;
        }
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
      completions: this.outputs,
      logger: this.logger,
      onHandlerSettled: () => {
        this.busySlots--;
        this.session?.credit();
        this.slotFreed?.();
      },
    });
    this.executions.set(
      execution,
      execution.run().finally(() => this.executions.delete(execution)),
    );
  }
}
