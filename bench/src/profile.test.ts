import { describe, expect, it } from "vitest";
import { summarizeProfile } from "./profile.js";

/** Four samples stamped 10, 11, 12 and 13 ms: a, b, b, c (a sample's time is the delta to the next). */
const profile = {
  startTime: 10_000,
  nodes: [
    { id: 1, callFrame: { functionName: "(root)", url: "", lineNumber: -1 }, children: [2, 3, 4] },
    { id: 2, callFrame: { functionName: "a", url: "node:a", lineNumber: 0 } },
    { id: 3, callFrame: { functionName: "b", url: "node:b", lineNumber: 0 } },
    { id: 4, callFrame: { functionName: "c", url: "node:c", lineNumber: 0 } },
  ],
  samples: [2, 3, 3, 4],
  timeDeltas: [0, 1000, 1000, 1000],
};

describe("summarizeProfile", () => {
  it("sums every sample, or only those taken within a window", () => {
    const all = summarizeProfile(profile);
    expect(all.totalMs).toBe(3);
    expect(all.functions.map((f) => [f.name, f.ms])).toEqual([
      ["b node: internals:1", 2],
      ["a node: internals:1", 1],
      // The last sample accounts for no time.
      ["c node: internals:1", 0],
    ]);
    // The samples stamped 11 and 12 ms: both b, each accounting for the 1 ms up to the next sample.
    const window = summarizeProfile(profile, 30, { name: "w", fromUs: 10_500, toUs: 12_000 });
    expect(window.totalMs).toBe(2);
    expect(window.functions.map((f) => [f.name, f.ms, f.percent])).toEqual([["b node: internals:1", 2, 100]]);
  });
});
