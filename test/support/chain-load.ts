import { Code, ConnectError } from "@connectrpc/connect";
import { EventType, type RunEvent, RunStatus } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { within } from "./wait-for.js";
import { task, type WeftClients } from "./weft.js";

/** A call that failed, when, and how. */
export interface FailedCall {
  at: number;
  code: Code;
  message: string;
}

/** What a watcher of one run received, across every stream it had to open. */
export interface Watched {
  runId: string;
  sequences: number[];
  events: RunEvent[];
  /** Streams opened (1 when none broke). */
  streams: number;
}

/** Options of {@link ChainLoad}. */
export interface ChainLoadOptions {
  /** Clients of each replica: runs are triggered and watched through them in turn. */
  replicas: WeftClients[];
  /** Task queue, also the workflow's name. */
  queue: string;
  /** Runs to start. */
  runs: number;
}

/**
 * Runs of a 3-task chain (a → b → c) started at a steady pace, each watched from its start to its
 * RUN_FINISHED by a stream that resumes after the last sequence it got whenever it breaks, as a
 * client holding a stream through a failover does; every call that fails is recorded, and calls
 * that fail UNAVAILABLE are retried (triggers carry an idempotency key, so a retry never starts a
 * second run).
 */
export class ChainLoad {
  /** Every failed call, in order. */
  readonly failures: FailedCall[] = [];
  /** The longest a trigger took, retries included, and when it started. */
  slowest = { ms: 0, at: 0 };
  /** Run ids, by their index. */
  readonly runIds: string[] = [];
  readonly watched: Watched[] = [];
  private readonly watches: Promise<void>[] = [];
  private stopped = false;

  constructor(private readonly options: ChainLoadOptions) {}

  /** Submits the chain workflow. */
  async submit(): Promise<void> {
    const { queue } = this.options;
    await this.retry(this.client(0), (c) =>
      c.workflows.submitWorkflow({
        definition: {
          name: queue,
          tasks: [task("a", [], { queue }), task("b", ["a"], { queue }), task("c", ["b"], { queue })],
        },
      }),
    );
  }

  /** Starts the runs, `perSecond` a second, each with its watcher; resolves once all started. */
  async start(perSecond: number): Promise<void> {
    const { runs, queue } = this.options;
    const started = Date.now();
    for (let i = 0; i < runs; i++) {
      const due = started + (i * 1000) / perSecond;
      if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
      const c = this.client(i);
      const at = Date.now();
      const res = await this.retry(c, (client) =>
        client.workflows.trigger({ workflow: queue, idempotencyKey: `run-${i}` }),
      );
      if (Date.now() - at > this.slowest.ms) this.slowest = { ms: Date.now() - at, at };
      const runId = res.run?.id ?? "";
      this.runIds[i] = runId;
      this.watch(runId, this.client(i + 1));
    }
  }

  /** Waits until every watcher saw its run's RUN_FINISHED. */
  async finished(timeoutMs: number): Promise<void> {
    let left = this.watches.length;
    for (const w of this.watches) void w.then(() => left--);
    try {
      await within(Promise.all(this.watches), timeoutMs, "every watcher to see its run finish");
    } catch (err) {
      throw new Error(`${(err as Error).message}: ${left} of ${this.watches.length} still watching`);
    }
  }

  /** Stops retrying (at the end of a failed test). */
  stop(): void {
    this.stopped = true;
  }

  /**
   * How long calls failed UNAVAILABLE: from the first failure to the last, and the number of
   * failures; zero when none did.
   */
  unavailableWindow(): { ms: number; calls: number } {
    const unavailable = this.failures.filter((f) => f.code === Code.Unavailable);
    const first = unavailable[0];
    const last = unavailable[unavailable.length - 1];
    if (first === undefined || last === undefined) return { ms: 0, calls: 0 };
    return { ms: last.at - first.at, calls: unavailable.length };
  }

  /** Problems of the watched event lists: a gap, a repeat, a missing end, a task completed twice. */
  problems(): string[] {
    const problems: string[] = [];
    for (const w of this.watched) {
      const expected = w.sequences.map((_, i) => i + 1);
      if (w.sequences.join(",") !== expected.join(","))
        problems.push(`${w.runId}: sequences ${w.sequences.join(",")} over ${w.streams} streams`);
      const last = w.events[w.events.length - 1];
      if (last?.type !== EventType.RUN_FINISHED || last.runStatus !== RunStatus.SUCCEEDED)
        problems.push(`${w.runId}: ends with ${last === undefined ? "nothing" : EventType[last.type]}`);
      const completed = w.events.filter((e) => e.type === EventType.TASK_COMPLETED).map((e) => e.taskId);
      if (completed.sort().join(",") !== "a,b,c")
        problems.push(`${w.runId}: completed ${completed.join(",")}`);
    }
    return problems;
  }

  private client(i: number): WeftClients {
    const { replicas } = this.options;
    return replicas[i % replicas.length] as WeftClients;
  }

  private watch(runId: string, c: WeftClients): void {
    const watched: Watched = { runId, sequences: [], events: [], streams: 0 };
    this.watched.push(watched);
    this.watches.push(
      (async () => {
        for (;;) {
          watched.streams++;
          const after = watched.sequences[watched.sequences.length - 1] ?? 0;
          try {
            for await (const res of c.workflows.watchRun({ runId, afterSequence: BigInt(after) })) {
              if (res.event === undefined) continue;
              watched.sequences.push(Number(res.event.sequence));
              watched.events.push(res.event);
            }
            const last = watched.events[watched.events.length - 1];
            if (last?.type === EventType.RUN_FINISHED) return;
          } catch (err) {
            this.record(err);
            if (this.stopped) return;
          }
          // The stream broke (or ended short): resume after the last event received, a moment later.
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      })(),
    );
  }

  /** Calls `fn` until it succeeds; failures are recorded, and only UNAVAILABLE ones retried. */
  private async retry<T>(c: WeftClients, fn: (c: WeftClients) => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await fn(c);
      } catch (err) {
        const failure = this.record(err);
        if (failure.code !== Code.Unavailable || this.stopped) throw err;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  private record(err: unknown): FailedCall {
    const e = ConnectError.from(err);
    const failure = { at: Date.now(), code: e.code, message: e.rawMessage };
    this.failures.push(failure);
    return failure;
  }
}
