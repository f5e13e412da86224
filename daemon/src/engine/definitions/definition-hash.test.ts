import { create, fromJson } from "@bufbuild/protobuf";
import { durationFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { WorkflowDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { describe, expect, it } from "vitest";
import { contentHash } from "./canonical.js";
import { definitionHash } from "./definition-hash.js";

describe("definitionHash", () => {
  it.each([
    ["one bare task", create(WorkflowDefinitionSchema, { name: "w", tasks: [{ id: "a", handler: "h" }] })],
    ["no tasks", create(WorkflowDefinitionSchema, { name: "w" })],
    [
      "every field set",
      create(WorkflowDefinitionSchema, {
        name: "étl",
        description: "nightly \u2603",
        tasks: [
          {
            id: "a",
            handler: "extract",
            queue: "io",
            input: fromJson(ValueSchema, { z: 1, a: { y: [1, { d: 2, c: "é" }], b: null } }),
            timeouts: { heartbeat: durationFromMs(1_500), startToClose: durationFromMs(60_000) },
            rateLimitKey: "tenant-{{input.a.b}}",
          },
          { id: "b", handler: "load", dependsOn: ["a"], retry: { maxAttempts: 2, jitter: 0 } },
        ],
        defaultRetry: { initialBackoff: durationFromMs(250), nonRetryableErrorTypes: ["Fatal"] },
        defaultTimeouts: { scheduleToStart: durationFromMs(5_000) },
        runTimeout: durationFromMs(3_600_000),
        continueOnFailure: true,
      }),
    ],
    [
      "3,000 tasks (several updates)",
      create(WorkflowDefinitionSchema, {
        name: "big",
        tasks: Array.from({ length: 3_000 }, (_, i) => ({
          id: `t${i}`,
          handler: "h",
          dependsOn: i === 0 ? [] : [`t${i - 1}`],
        })),
      }),
    ],
  ])("equals contentHash: %s", (_name, def) => {
    expect(definitionHash(def)).toBe(contentHash(def));
  });
});
