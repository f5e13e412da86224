import { describe, expect, it } from "vitest";
import { shareDefaultAbortReason } from "./abort-reason.js";

describe("shareDefaultAbortReason", () => {
  it("gives aborts without a reason one shared AbortError, and leaves given reasons alone", () => {
    shareDefaultAbortReason();
    shareDefaultAbortReason();
    const a = new AbortController();
    const b = new AbortController();
    let heard: unknown;
    a.signal.addEventListener("abort", () => {
      heard = a.signal.reason;
    });
    a.abort();
    b.abort(undefined);
    expect(a.signal.aborted).toBe(true);
    expect(heard).toBe(a.signal.reason);
    expect(a.signal.reason).toBeInstanceOf(DOMException);
    expect([(a.signal.reason as DOMException).name, (a.signal.reason as DOMException).message]).toEqual([
      "AbortError",
      "This operation was aborted",
    ]);
    expect(b.signal.reason).toBe(a.signal.reason);
    const c = new AbortController();
    const reason = new Error("stopped");
    c.abort(reason);
    expect(c.signal.reason).toBe(reason);
    // A second abort keeps the first reason.
    c.abort();
    expect(c.signal.reason).toBe(reason);
    expect(() => a.signal.throwIfAborted()).toThrow("This operation was aborted");
  });
});
