import { afterEach, describe, expect, it } from "vitest";
import { afterResponsiveTime, EventLoopWatch } from "./event-loop.js";

/** Keeps the event loop busy for `ms`, as a CPU-bound callback or a long GC pause would. */
function blockLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

const watches: EventLoopWatch[] = [];
function watch(options: ConstructorParameters<typeof EventLoopWatch>[0] = {}): EventLoopWatch {
  const w = new EventLoopWatch(options);
  watches.push(w);
  return w;
}
afterEach(() => {
  for (const w of watches.splice(0)) w.stop();
});

describe("EventLoopWatch", () => {
  it("adds up the time the loop was blocked, the stall going on included, and reports long stalls", async () => {
    const stalls: number[] = [];
    const loop = watch({ tickMs: 20, stallMs: 200, onStall: (ms) => stalls.push(ms) });
    // libuv's histogram samples from its second timer callback on.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const before = loop.blockedMs();
    blockLoop(300);
    // Counted before the watch's timer could run.
    expect(loop.blockedMs() - before).toBeGreaterThanOrEqual(250);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(loop.blockedMs() - before).toBeGreaterThanOrEqual(250);
    expect(loop.blockedMs() - before).toBeLessThan(400);
    expect(stalls).toHaveLength(1);
    expect(stalls[0]).toBeGreaterThanOrEqual(250);
    const delays = loop.takeDelays();
    expect([...delays.keys()]).toEqual(['quantile="0.5"', 'quantile="0.99"', 'quantile="1"']);
    expect(delays.get('quantile="1"')).toBeGreaterThanOrEqual(0.25);
    expect(loop.takeDelays().get('quantile="1"')).toBeLessThan(0.25);
  });
});

describe("afterResponsiveTime", () => {
  it("fires after the budget when the loop is responsive", async () => {
    const loop = watch({ tickMs: 20 });
    const started = performance.now();
    const late = await new Promise<number[]>((resolve) =>
      afterResponsiveTime(loop, 100, (wall, blocked) => resolve([wall, blocked])),
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(99);
    // Responsive time, the wall time less what counted as blocked, reached the budget. (How much
    // counted as blocked depends on the machine's load: a busy CPU delays an idle loop's ticks too.)
    const [wall = 0, blocked = 0] = late;
    expect(wall - blocked).toBeGreaterThanOrEqual(99);
    expect(blocked).toBeLessThan(wall);
  });

  it("does not count the time the loop was blocked", async () => {
    const loop = watch({ tickMs: 20 });
    const started = performance.now();
    const late = new Promise<number[]>((resolve) =>
      afterResponsiveTime(loop, 200, (wall, blocked) => resolve([wall, blocked])),
    );
    blockLoop(500);
    const [wall = 0, blocked = 0] = await late;
    expect(performance.now() - started).toBeGreaterThanOrEqual(680);
    expect(blocked).toBeGreaterThanOrEqual(450);
    expect(wall - blocked).toBeGreaterThanOrEqual(199);
  });
});
