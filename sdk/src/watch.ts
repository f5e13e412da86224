import { setTimeout as sleep } from "node:timers/promises";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { ReconnectOptions } from "./client-options.js";
import { toWeftError } from "./error-mapping.js";
import { EventType, type RunEvent, RunStatus } from "./gen/weft/v1/run_pb.js";
import type { WorkflowService } from "./gen/weft/v1/workflow_service_pb.js";
import { backoffDelay, isTransient } from "./reconnect.js";

/** What {@link WatchOptions.onReconnect} is told before each reconnection. */
export interface ReconnectInfo {
  /** Consecutive failures so far, starting at 1. */
  attempt: number;
  /** How long the watch waits before reconnecting. */
  delayMs: number;
  /** Sequence of the last event delivered; the new stream resumes after it. */
  afterSequence: bigint;
  /** Why the stream dropped. */
  error: ConnectError;
}

/** Options of {@link WeftClient.watch}. */
export interface WatchOptions {
  /**
   * Deliver only events with a greater sequence number.
   * @defaultValue 0 (every event of the run)
   */
  afterSequence?: bigint | number;
  /** Stops the watch: the iteration ends with the signal's reason. */
  signal?: AbortSignal;
  /** Called before each reconnection after a dropped stream. */
  onReconnect?: (info: ReconnectInfo) => void;
}

/**
 * Streams the events of run `runId` in order, reconnecting after a dropped stream with capped
 * exponential backoff and resuming after the last delivered sequence: no gap, no duplicate. Ends
 * when weftd ends the stream after the run's RUN_FINISHED event, the run's last (a run resumed
 * after it finished carries on past its first RUN_FINISHED). @throws WeftError (e.g. RunNotFoundError), or the error that
 * made it give up after `reconnect.maxAttempts` consecutive failures.
 */
export async function* watchRun(
  client: Client<typeof WorkflowService>,
  runId: string,
  reconnect: Required<ReconnectOptions>,
  options: WatchOptions = {},
): AsyncGenerator<RunEvent, void, undefined> {
  const { signal } = options;
  let last = BigInt(options.afterSequence ?? 0);
  let failures = 0;
  // Whether the last event delivered was a RUN_FINISHED: a stream that ends cleanly then is over.
  let atFinish = false;
  // weftd holds a stream open when nothing comes after `afterSequence`, even for a finished run:
  // a resume past the final event would wait forever, so it is checked first.
  if (last > 0n && (await finishedBefore(client, runId, last, signal))) return;
  for (;;) {
    signal?.throwIfAborted();
    let error: ConnectError;
    try {
      for await (const res of client.watchRun({ runId, afterSequence: last }, { signal })) {
        const event = res.event;
        // A replayed event (at-least-once on the wire) is dropped rather than delivered twice.
        if (event === undefined || event.sequence <= last) continue;
        last = event.sequence;
        failures = 0;
        atFinish = event.type === EventType.RUN_FINISHED;
        yield event;
      }
      if (atFinish) return;
      // A stream that ends cleanly without RUN_FINISHED: either the run had already finished
      // before `afterSequence` (nothing more will come), or the stream was cut short.
      if (await finishedBefore(client, runId, last, signal)) return;
      error = new ConnectError("the watch stream ended before the run finished", Code.Unavailable);
    } catch (err) {
      signal?.throwIfAborted();
      error = ConnectError.from(err);
      if (!isTransient(error)) throw toWeftError(error, { runId });
    }
    failures++;
    if (failures > reconnect.maxAttempts) throw toWeftError(error, { runId });
    const delayMs = backoffDelay(failures, reconnect);
    options.onReconnect?.({ attempt: failures, delayMs, afterSequence: last, error });
    await sleep(delayMs, undefined, { signal });
  }
}

/** Whether the run is over and its last event is at or before `sequence`. */
async function finishedBefore(
  client: Client<typeof WorkflowService>,
  runId: string,
  sequence: bigint,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  try {
    const run = (await client.getRun({ runId }, { signal, timeoutMs: 10_000 })).run;
    const over =
      run !== undefined && run.status !== RunStatus.RUNNING && run.status !== RunStatus.UNSPECIFIED;
    return over && run.lastSequence <= sequence;
  } catch {
    // Could not tell (the daemon is going away): reconnecting will.
    return false;
  }
}
