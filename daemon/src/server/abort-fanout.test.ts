import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { AbortFanOut } from "./abort-fanout.js";

describe("AbortFanOut", () => {
  it("keeps one listener on the shared signal however many calls follow it, and aborts each with its reason", () => {
    const shared = new AbortController();
    const fanOut = new AbortFanOut(shared.signal);
    const calls = Array.from({ length: 50 }, () => new AbortController());
    const followers = calls.map((call) => fanOut.follow(call.signal));
    expect(getEventListeners(shared.signal, "abort")).toHaveLength(1);
    const reason = new Error("shutting down");
    shared.abort(reason);
    for (const f of followers) expect(f.signal.reason).toBe(reason);
    // A call that follows after the abort is aborted at once.
    expect(fanOut.follow().signal.reason).toBe(reason);
  });

  it("forgets a call once it ends or is released", () => {
    const shared = new AbortController();
    const fanOut = new AbortFanOut(shared.signal);
    const call = new AbortController();
    const ended = fanOut.follow(call.signal);
    call.abort("client went away");
    expect(ended.signal.reason).toBe("client went away");
    expect(getEventListeners(call.signal, "abort")).toHaveLength(0);
    const released = fanOut.follow();
    released.release();
    let ran = 0;
    const stop = fanOut.onAbort(() => ran++);
    stop();
    expect((fanOut as unknown as { callbacks: Set<unknown> }).callbacks.size).toBe(0);
    shared.abort(new Error("late"));
    expect(released.signal.aborted).toBe(false);
    expect(ran).toBe(0);
  });
});
