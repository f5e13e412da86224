import type { ConnectError } from "@connectrpc/connect";
import { toWeftError } from "./error-mapping.js";
import type { RunEvent } from "./gen/weft/v1/run_pb.js";
import type { FollowEnd, Follower, SharedWatch } from "./shared-watch.js";
import type { WatchOptions } from "./watch.js";

/** The shape of a run id (weftd's ids are UUIDs): anything else goes to weftd's own check, by WatchRun. */
const RUN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Whether the shared stream may follow `runId`. */
export function sharable(shared: SharedWatch | undefined, runId: string): shared is SharedWatch {
  return shared !== undefined && !shared.unsupported && RUN_ID.test(runId);
}

/** How waiting for a run's end on the shared stream came out. */
export type FinalOutcome = { kind: "event"; event: RunEvent } | { kind: "unsupported"; error: ConnectError };

/**
 * Waits on the shared stream for the run's RUN_FINISHED event. Rejects with the run's error
 * (RunNotFoundError, …), or with the signal's reason once it aborts.
 */
export function finalEvent(
  shared: SharedWatch,
  runId: string,
  signal: AbortSignal | undefined,
): Promise<FinalOutcome> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    let final: RunEvent | undefined;
    const onAbort = () => {
      unfollow();
      reject(signal?.reason);
    };
    const follower: Follower = {
      after: 0n,
      allEvents: false,
      onEvent(event) {
        final = event;
      },
      onEnd(end) {
        signal?.removeEventListener("abort", onAbort);
        if (final !== undefined) resolve({ kind: "event", event: final });
        else if (end.kind === "unsupported") resolve({ kind: "unsupported", error: end.error });
        else if (end.kind === "failed") reject(toWeftError(end.error, { runId }));
        // A resume after the run's end cannot happen from sequence 0; say what it means.
        else reject(toWeftError(new Error(`run "${runId}" ended without a final event`), { runId }));
      },
    };
    const unfollow = shared.follow(runId, follower);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * The run's events after `options.afterSequence`, in order, from the shared stream; ends after the
 * run's last RUN_FINISHED (or at once when the run had finished at or before the cursor): after a
 * RUN_FINISHED, `goesOn` says whether the run has events past it (it was resumed), and the run is
 * followed again after it. When the stream cannot serve the run, `fallback` takes over from the
 * last event delivered.
 */
export async function* sharedEvents(
  shared: SharedWatch,
  runId: string,
  options: WatchOptions,
  fallback: (afterSequence: bigint) => AsyncIterable<RunEvent>,
  goesOn: (afterSequence: bigint) => Promise<boolean>,
): AsyncGenerator<RunEvent, void, undefined> {
  const { signal } = options;
  signal?.throwIfAborted();
  let last = BigInt(options.afterSequence ?? 0);
  for (;;) {
    const queue: RunEvent[] = [];
    let end: FollowEnd | undefined;
    let wake: (() => void) | undefined;
    const poke = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const follower: Follower = {
      after: last,
      allEvents: true,
      onEvent(event) {
        queue.push(event);
        poke();
      },
      onEnd(ended) {
        end = ended;
        poke();
      },
      onReconnect(attempt, delayMs, error) {
        options.onReconnect?.({ attempt, delayMs, afterSequence: follower.after, error });
      },
    };
    const unfollow = shared.follow(runId, follower);
    signal?.addEventListener("abort", poke, { once: true });
    let finished = false;
    try {
      for (;;) {
        signal?.throwIfAborted();
        const event = queue.shift();
        if (event !== undefined) {
          last = event.sequence;
          yield event;
          continue;
        }
        if (end !== undefined) {
          if (end.kind === "unsupported") yield* fallback(last);
          else if (end.kind === "failed") throw toWeftError(end.error, { runId });
          else finished = end.kind === "finished";
          break;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    } finally {
      unfollow();
      signal?.removeEventListener("abort", poke);
    }
    // A run resumed after its RUN_FINISHED carries on: its next events come from a new follow.
    if (!finished || !(await goesOn(last))) return;
  }
}
