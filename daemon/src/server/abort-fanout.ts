/**
 * One listener on a long-lived signal (weftd's shutdown, the end of its grace) for any number of
 * calls. Each call registers here for as long as it is open instead of adding a listener of its own
 * to the shared signal, which would hold one listener per open call (Node warns past 10: a
 * MaxListenersExceededWarning with more than 10 open streams or polls) and keep a call's closure
 * alive if it ever forgot to remove it.
 */
export class AbortFanOut {
  private readonly callbacks = new Set<() => void>();

  constructor(readonly signal: AbortSignal) {
    signal.addEventListener(
      "abort",
      () => {
        const callbacks = [...this.callbacks];
        this.callbacks.clear();
        for (const callback of callbacks) callback();
      },
      { once: true },
    );
  }

  /** Whether the shared signal has aborted. */
  get aborted(): boolean {
    return this.signal.aborted;
  }

  /** Runs `callback` once when the shared signal aborts (at once if it has); the result stops that. */
  onAbort(callback: () => void): () => void {
    if (this.signal.aborted) {
      callback();
      return () => {};
    }
    this.callbacks.add(callback);
    return () => this.callbacks.delete(callback);
  }

  /**
   * A signal of one call, aborted with the shared signal's reason, or with `call`'s (the call's own
   * signal) when that aborts first. The call calls `release` when it is over; an abort of `call`
   * releases it too.
   */
  follow(call?: AbortSignal): { signal: AbortSignal; release: () => void } {
    const controller = new AbortController();
    let stop = () => {};
    const onCall = () => {
      stop();
      controller.abort(call?.reason);
    };
    const release = () => {
      stop();
      call?.removeEventListener("abort", onCall);
    };
    stop = this.onAbort(() => {
      call?.removeEventListener("abort", onCall);
      controller.abort(this.signal.reason);
    });
    if (!controller.signal.aborted) {
      if (call?.aborted === true) onCall();
      else call?.addEventListener("abort", onCall, { once: true });
    }
    return { signal: controller.signal, release };
  }
}
