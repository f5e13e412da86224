import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Value } from "@bufbuild/protobuf/wkt";
import type { TaskAssignment, WorkRequestSchema } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import type { CompletionBatcher } from "./completion-batcher.js";
import type { DaemonHealth } from "./daemon-health.js";
import { type ReportPolicy, reportTimeoutMs } from "./reporter.js";
import type { WorkerClient } from "./worker-client.js";

type WorkRequestInit = MessageInitShape<typeof WorkRequestSchema>;

/** Most credits the daemon lets a stream hold unused. */
const maxUnusedCredits = 1_000;
/** Most outputs in one message (the daemon's limit). */
const maxOutputsPerMessage = 1_000;

/** An output sent, or to be sent, on the stream. */
interface Output {
  leaseId: string;
  output: Value;
  policy: ReportPolicy;
  done: () => void;
}

/** The messages a stream sends, as an async iterable that ends once closed and drained. */
class Outbox implements AsyncIterable<WorkRequestInit> {
  private readonly messages: WorkRequestInit[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  push(message: WorkRequestInit): void {
    this.messages.push(message);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WorkRequestInit> {
    for (;;) {
      const message = this.messages.shift();
      if (message !== undefined) {
        yield message;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }
}

/**
 * One Work stream of a worker: it grants the daemon credits as slots free and receives an
 * assignment per credit; it sends outputs and receives an answer for each. The slots freed and the
 * outputs made in one turn of the event loop go out as one message. An output the stream cannot
 * deliver (the stream broke or closed first), or whose answer asks for a retry, is handed to the
 * worker's CompletionBatcher, which delivers it with CompleteTasks under its policy.
 */
export class WorkSession {
  private readonly outbox = new Outbox();
  /** Slots freed and not yet granted. */
  private freed = 0;
  /** Credits granted to the daemon and assignments received: the difference is unused. */
  private granted = 0;
  private received = 0;
  private pending: Output[] = [];
  /** Outputs sent, by lease id, until answered. */
  private readonly sent = new Map<string, Output>();
  private flushScheduled = false;
  private open = true;

  constructor(
    private readonly client: WorkerClient,
    private readonly batcher: CompletionBatcher,
    private readonly health: DaemonHealth,
    private readonly identity: { queue: string; workerId: string; handlers: string[] },
    freeSlots: number,
  ) {
    this.freed = freeSlots;
  }

  /** Sends a task's output; undefined when the stream no longer takes outputs (use the batcher). */
  complete(leaseId: string, output: Value, policy: ReportPolicy): Promise<void> | undefined {
    if (!this.open) return undefined;
    return new Promise((done) => {
      this.pending.push({ leaseId, output, policy, done });
      this.schedule();
    });
  }

  /** A slot freed: one more credit for the daemon. */
  credit(): void {
    if (!this.open) return;
    this.freed++;
    this.schedule();
  }

  /**
   * Opens the stream and runs it until it ends, calling `start` for each assignment. Once `signal`
   * aborts, the stream half-closes: the daemon answers the outputs sent and ends it. Rejects with
   * the stream's error; outputs left unanswered go to the batcher either way.
   */
  async run(start: (assignment: TaskAssignment) => void, signal: AbortSignal): Promise<void> {
    const call = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const halfClose = () => {
      this.flush();
      this.open = false;
      this.outbox.close();
      // A daemon that never ends the stream does not hold the worker's shutdown.
      timer = setTimeout(() => call.abort(), reportTimeoutMs);
    };
    if (signal.aborted) return;
    signal.addEventListener("abort", halfClose, { once: true });
    this.outbox.push({ ...this.identity, credits: this.grant() });
    try {
      for await (const response of this.client.work(this.outbox, { signal: call.signal })) {
        this.health.ok();
        this.received += response.assignments.length;
        for (const assignment of response.assignments) start(assignment);
        for (const result of response.results) {
          const output = this.sent.get(result.leaseId);
          if (output === undefined) continue;
          this.sent.delete(result.leaseId);
          if (result.code === 0) output.done();
          else
            void this.batcher
              .takeOver(output.leaseId, output.output, output.policy, result)
              .then(output.done);
        }
        // Credits held back by the limit on unused ones.
        if (this.freed > 0) this.schedule();
      }
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", halfClose);
      this.open = false;
      this.outbox.close();
      for (const output of [...this.sent.values(), ...this.pending.splice(0)]) {
        void this.batcher.takeOver(output.leaseId, output.output, output.policy).then(output.done);
      }
      this.sent.clear();
    }
  }

  private schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.open) this.flush();
    });
  }

  /** Sends the credits and outputs gathered since the last message. */
  private flush(): void {
    const credits = this.grant();
    const outputs = this.pending.splice(0, maxOutputsPerMessage);
    if (credits === 0 && outputs.length === 0) return;
    for (const output of outputs) this.sent.set(output.leaseId, output);
    this.outbox.push({
      credits,
      completions: outputs.map(({ leaseId, output }) => ({ leaseId, output })),
    });
    if (this.pending.length > 0) this.schedule();
  }

  /** Takes the freed slots the daemon may be granted now. */
  private grant(): number {
    const credits = Math.min(this.freed, maxUnusedCredits - (this.granted - this.received));
    if (credits <= 0) return 0;
    this.freed -= credits;
    this.granted += credits;
    return credits;
  }
}
