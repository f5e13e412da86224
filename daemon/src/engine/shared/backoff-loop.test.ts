import { afterEach, describe, expect, it } from "vitest";
import { BackoffLoop } from "./backoff-loop.js";

const loops: BackoffLoop[] = [];
afterEach(() => {
  for (const loop of loops.splice(0)) loop.stop();
});

async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("BackoffLoop", () => {
  it("pauses twice as long after each failure in a row, up to the cap", () => {
    expect([0, 1, 2, 3, 4, 5, 10].map((n) => BackoffLoop.pause(100, 1000, n))).toEqual([
      100, 200, 400, 800, 1000, 1000, 1000,
    ]);
    // A cap below the pause is no cap.
    expect(BackoffLoop.pause(5000, 1000, 3)).toBe(5000);
  });

  it("backs off while the work fails, and runs at its pace again once it succeeds", async () => {
    let calls = 0;
    const pauses: number[] = [];
    const loop = new BackoffLoop(
      async () => {
        calls++;
        if (calls <= 3) throw new Error("Connection is closed.");
      },
      { everyMs: 10, maxMs: 1000, onError: (_err, retryInMs) => pauses.push(retryInMs) },
    );
    loops.push(loop);
    loop.start();
    await waitFor(() => calls >= 5, "five runs");
    expect(pauses).toEqual([20, 40, 80]);
  });

  it("never overlaps a run that hangs, and starts none once stopped", async () => {
    let calls = 0;
    let release: () => void = () => {};
    const loop = new BackoffLoop(
      () => {
        calls++;
        return new Promise<void>((resolve) => {
          release = resolve;
        });
      },
      { everyMs: 5, maxMs: 100, onError: () => {} },
    );
    loops.push(loop);
    loop.start();
    await waitFor(() => calls === 1, "the first run");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(calls).toBe(1);
    release();
    await waitFor(() => calls === 2, "the second run");
    loop.stop();
    release();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(calls).toBe(2);
  });
});
