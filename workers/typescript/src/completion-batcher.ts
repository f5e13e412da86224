import type { Value } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CompleteTaskResult } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import type { Logger } from "pino";
import { Backoff, sleep } from "./backoff.js";
import type { DaemonHealth } from "./daemon-health.js";
import { type ReportPolicy, report, reportTimeoutMs, shouldRetryReport } from "./reporter.js";
import type { WorkerClient } from "./worker-client.js";

/** Most completions in one CompleteTasks call (the daemon's limit). */
const maxCompletionsPerCall = 1_000;

/** A completion waiting for (or between) deliveries. */
interface PendingCompletion {
  leaseId: string;
  output: Value;
  policy: ReportPolicy;
  backoff: Backoff;
  /** Deliveries tried so far. */
  attempts: number;
  /** Resolves the promise {@link CompletionBatcher.complete} returned. */
  done: () => void;
}

/**
 * Delivers a worker's task outputs with CompleteTasks without adding latency: a completion goes out
 * at once when no call is in flight; those made while one is in flight go out together in the next
 * call, as soon as it returns. Each completion is answered, retried and logged on its own, as a
 * CompleteTask of its own would be. Against a daemon without CompleteTasks (UNIMPLEMENTED, an older
 * weftd) it falls back to one CompleteTask per task for the rest of its life.
 */
export class CompletionBatcher {
  private readonly queued: PendingCompletion[] = [];
  private sending = false;
  private batched = true;

  constructor(
    private readonly client: WorkerClient,
    private readonly health: DaemonHealth,
    private readonly logger: Logger,
  ) {}

  /** Delivers the output of the task holding `leaseId`; resolves once it is recorded or given up. */
  complete(leaseId: string, output: Value, policy: ReportPolicy): Promise<void> {
    return new Promise((done) => {
      const backoff = new Backoff(policy.initialDelayMs, policy.maxDelayMs);
      this.enqueue({ leaseId, output, policy, backoff, attempts: 0, done });
    });
  }

  /**
   * Takes over an output that another channel (a Work stream) delivered and got `result` for, or
   * could not deliver (no `result`): it is done, or sent from here under its policy, as if this
   * batcher had sent it.
   */
  takeOver(
    leaseId: string,
    output: Value,
    policy: ReportPolicy,
    result?: Pick<CompleteTaskResult, "leaseId" | "code" | "message">,
  ): Promise<void> {
    return new Promise((done) => {
      const backoff = new Backoff(policy.initialDelayMs, policy.maxDelayMs);
      const completion: PendingCompletion = { leaseId, output, policy, backoff, attempts: 0, done };
      if (result === undefined) this.enqueue(completion);
      else this.settle(completion, resultError(result, leaseId));
    });
  }

  private enqueue(completion: PendingCompletion): void {
    if (!this.batched) {
      this.completeOne(completion);
      return;
    }
    this.queued.push(completion);
    if (!this.sending) {
      void this.sendQueued();
    }
  }

  /** Sends what is queued, one call at a time, until the queue is empty. Never rejects. */
  private async sendQueued(): Promise<void> {
    this.sending = true;
    try {
      while (this.queued.length > 0 && this.batched) {
        const batch: PendingCompletion[] = [];
        for (const completion of this.queued.splice(0, maxCompletionsPerCall)) {
          if (completion.policy.signal.aborted) {
            // The task was abandoned at shutdown before its output went out: the output is dropped.
            completion.done();
          } else {
            batch.push(completion);
          }
        }
        if (batch.length > 0) {
          await this.send(batch);
        }
      }
    } finally {
      this.sending = false;
    }
  }

  private async send(batch: PendingCompletion[]): Promise<void> {
    let results: CompleteTaskResult[];
    try {
      const completions = batch.map(({ leaseId, output }) => ({ leaseId, output }));
      ({ results } = await this.client.completeTasks({ completions }, { timeoutMs: reportTimeoutMs }));
    } catch (err) {
      const error = ConnectError.from(err);
      if (error.code === Code.Unimplemented) {
        this.fallBack(batch);
        return;
      }
      for (const completion of batch) {
        this.settle(completion, error);
      }
      return;
    }
    this.health.ok();
    batch.forEach((completion, i) => {
      this.settle(completion, resultError(results[i], completion.leaseId));
    });
  }

  /** Ends a delivery attempt (`err` undefined: recorded): done, or retried after its own backoff. */
  private settle(completion: PendingCompletion, err: ConnectError | undefined): void {
    completion.attempts++;
    if (
      err === undefined ||
      !shouldRetryReport("CompleteTasks", err, completion.attempts, completion.policy)
    ) {
      completion.done();
      return;
    }
    const { signal } = completion.policy;
    void sleep(completion.backoff.next(), signal).then(() => {
      if (signal.aborted) {
        completion.done();
      } else {
        this.enqueue(completion);
      }
    });
  }

  private fallBack(batch: PendingCompletion[]): void {
    this.batched = false;
    this.logger.info(
      "the daemon does not implement CompleteTasks (an older weftd); completing tasks one by one",
    );
    for (const completion of [...batch, ...this.queued.splice(0)]) {
      this.completeOne(completion);
    }
  }

  private completeOne({ leaseId, output, policy, done }: PendingCompletion): void {
    void report("CompleteTask", (call) => this.client.completeTask({ leaseId, output }, call), policy).then(
      done,
    );
  }
}

/** The error CompleteTask would have thrown for this completion, or undefined when it was recorded. */
function resultError(
  result: Pick<CompleteTaskResult, "leaseId" | "code" | "message"> | undefined,
  leaseId: string,
): ConnectError | undefined {
  if (result === undefined || result.leaseId !== leaseId) {
    return new ConnectError(`the daemon answered no result for lease ${leaseId}`, Code.Internal);
  }
  if (result.code === 0) {
    return undefined;
  }
  const code = result.code in Code ? (result.code as Code) : Code.Unknown;
  return new ConnectError(result.message, code);
}
