import { Code, ConnectError } from "@connectrpc/connect";
import type { RunEvent } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { Engine } from "./engine.js";
import type { StoredEvent } from "./event-hub.js";
import { checkRunId, notFound } from "./run-ops.js";
import { eventFromStored, isFinalEvent, isFinalRunStatus } from "./run-view.js";

const PAGE = 500;

/** WatchRun streams: history first, then live events, until the run's final event. */
export class Watches {
  private active = 0;

  constructor(private readonly engine: Engine) {}

  /** Number of open watch streams on this replica. */
  get count(): number {
    return this.active;
  }

  /**
   * Yields the run's events with a sequence above `afterSequence`, in order,
   * without gaps or duplicates, and returns after the final event.
   */
  async *watch(runId: string, afterSequence: number, signal: AbortSignal): AsyncGenerator<RunEvent> {
    checkRunId(runId);
    const { engine } = this;
    if ((await engine.redis.exists(engine.keys.run(runId).run)) === 0) throw notFound(runId);
    if (this.active >= engine.options.maxWatchersPerReplica) {
      throw new ConnectError(
        `this replica already serves ${this.active} watchers (limit ${engine.options.maxWatchersPerReplica})`,
        Code.ResourceExhausted,
      );
    }
    this.active++;
    const inbox: StoredEvent[] = [];
    let wake: (() => void) | undefined;
    const unsubscribe = await engine.hub.subscribe(runId, afterSequence, (events) => {
      inbox.push(...events);
      wake?.();
    });
    const aborted = new Promise<never>((_, reject) => {
      const onAbort = () => reject(signal.reason ?? new ConnectError("watch cancelled", Code.Canceled));
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
    aborted.catch(() => {});
    try {
      let cursor = afterSequence;
      // Reads from Redis until caught up; true when the final event was sent.
      const catchUp = async function* (): AsyncGenerator<RunEvent, boolean> {
        for (;;) {
          const page = await engine.hub.read(runId, cursor, PAGE);
          for (const e of page) {
            cursor = e.sequence;
            yield eventFromStored(runId, e);
            if (isFinalEvent(e)) return true;
          }
          if (page.length < PAGE) return false;
        }
      };
      if (yield* catchUp()) return;
      // A finished run resumed at or after its final event has nothing more to send.
      if (isFinalRunStatus(await engine.redis.hget(engine.keys.run(runId).run, "s"))) {
        yield* catchUp();
        return;
      }
      for (;;) {
        if (inbox.length === 0) {
          await Promise.race([new Promise<void>((resolve) => (wake = resolve)), aborted]);
          wake = undefined;
        }
        const batch = inbox.splice(0);
        for (const e of batch) {
          if (e.sequence <= cursor) continue;
          if (e.sequence > cursor + 1) {
            // A gap (this watcher joined a shared fetch mid-way): read what is missing.
            if (yield* catchUp()) return;
            continue;
          }
          cursor = e.sequence;
          yield eventFromStored(runId, e);
          if (isFinalEvent(e)) return;
        }
      }
    } finally {
      unsubscribe();
      this.active--;
    }
  }
}
