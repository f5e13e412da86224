import { create, toBinary } from "@bufbuild/protobuf";
import { CompleteTasksResponseSchema, WorkResponseSchema } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { describe, expect, it } from "vitest";
import { fitResults, splitResults } from "./answer-fit.js";

const results = (n: number, message: string) =>
  Array.from({ length: n }, (_, i) => ({ leaseId: `lease-${i}`.padEnd(150, "x"), code: 9, message }));

describe("fitResults", () => {
  it("keeps results that fit as they are", () => {
    const rs = results(10, "lease is no longer valid");
    expect(fitResults([...rs], 64 * 1024)).toEqual(rs);
  });

  it.each([
    [256 * 1024, "the last messages", true],
    [64 * 1024, "every message, then the last lease ids", false],
  ])("fits %i bytes by emptying %s, keeping every code", (max, _, leaseIdsKept) => {
    const fitted = fitResults(results(1000, "m".repeat(200)), max);
    const bytes = toBinary(
      CompleteTasksResponseSchema,
      create(CompleteTasksResponseSchema, { results: fitted }),
    ).length;
    expect(bytes).toBeLessThanOrEqual(max);
    expect(fitted.map((r) => r.code)).toEqual(Array(1000).fill(9));
    expect(fitted[999]?.message).toBe("");
    expect(fitted[0]?.message).toBe(leaseIdsKept ? "m".repeat(200) : "");
    expect(fitted[999]?.leaseId).toBe(leaseIdsKept ? "lease-999".padEnd(150, "x") : "");
    expect(fitted[0]?.leaseId).toBe("lease-0".padEnd(150, "x"));
  });
});

describe("splitResults", () => {
  it("splits the results of one message into messages that each fit, in order", () => {
    const max = 64 * 1024;
    const rs = results(1000, "m".repeat(200));
    const parts = splitResults(rs, max);
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.flat()).toEqual(rs);
    for (const part of parts) {
      expect(
        toBinary(WorkResponseSchema, create(WorkResponseSchema, { results: part })).length,
      ).toBeLessThanOrEqual(max);
    }
  });
});
