import { describe, expect, it } from "vitest";
import { MetricsRegistry } from "./metrics.js";

describe("MetricsRegistry", () => {
  it("renders the Prometheus text format, reading values at each scrape", () => {
    const metrics = new MetricsRegistry();
    let depth = 3;
    metrics.register(
      "weft_queue_depth",
      "gauge",
      "Jobs waiting.",
      () => new Map([['queue="emails"', depth]]),
    );
    metrics.register("weft_up", "gauge", "Up.", () => 1);
    depth = 4;
    expect(metrics.render()).toBe(
      [
        "# HELP weft_queue_depth Jobs waiting.",
        "# TYPE weft_queue_depth gauge",
        'weft_queue_depth{queue="emails"} 4',
        "# HELP weft_up Up.",
        "# TYPE weft_up gauge",
        "weft_up 1",
        "",
      ].join("\n"),
    );
  });

  it("rejects names Prometheus would not accept", () => {
    expect(() => new MetricsRegistry().register("weft-up", "gauge", "x", () => 1)).toThrow(
      /invalid metric name/,
    );
  });
});
