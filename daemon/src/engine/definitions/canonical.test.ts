import { clone, create, fromJson, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { type WorkflowDefinition, WorkflowDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { describe, expect, it } from "vitest";
import { canonicalJson, contentHash } from "./canonical.js";

type WorkflowInit = Exclude<MessageInitShape<typeof WorkflowDefinitionSchema>, WorkflowDefinition>;

function def(input: JsonObject, extra: WorkflowInit = {}) {
  return create(WorkflowDefinitionSchema, {
    name: "etl",
    description: "nightly",
    tasks: [
      { id: "a", handler: "extract", input: fromJson(ValueSchema, input) },
      { id: "b", handler: "load", dependsOn: ["a"], retry: { maxAttempts: 2 } },
    ],
    defaultTimeouts: { heartbeat: durationFromMs(5_000) },
    ...extra,
  });
}

const base = { x: 1, nested: { b: [1, { d: 2, c: 3 }], a: "s" } };

describe("canonicalJson", () => {
  it("sorts object keys at every depth and keeps array order", () => {
    expect(canonicalJson({ b: 1, a: [{ z: null, y: true }, "s"] })).toBe(
      '{"a":[{"y":true,"z":null},"s"],"b":1}',
    );
  });
});

describe("contentHash", () => {
  it("is a hex SHA-256", () => {
    expect(contentHash(def(base))).toMatch(/^[0-9a-f]{64}$/);
  });

  it("is equal for identical content", () => {
    const d = def(base);
    expect(contentHash(clone(WorkflowDefinitionSchema, d))).toBe(contentHash(d));
    expect(contentHash(def(base))).toBe(contentHash(d));
  });

  it("ignores key order inside Struct inputs", () => {
    const reordered = { nested: { a: "s", b: [1, { c: 3, d: 2 }] }, x: 1 };
    expect(contentHash(def(reordered))).toBe(contentHash(def(base)));
  });

  it("does not tell an explicit default from an unset scalar", () => {
    const explicit = def(base, { continueOnFailure: false, description: "nightly" });
    expect(contentHash(explicit)).toBe(contentHash(def(base)));
  });

  it("changes when anything else changes", () => {
    const original = contentHash(def(base));
    const variants: WorkflowDefinition[] = [
      def(base, { name: "etl2" }),
      def(base, { description: "hourly" }),
      def(base, { continueOnFailure: true }),
      def(base, { runTimeout: durationFromMs(1_000) }),
      def(base, { defaultTimeouts: { heartbeat: durationFromMs(6_000) } }),
      def(base, { defaultRetry: { jitter: 0 } }),
      def({ ...base, x: 2 }),
      def({ ...base, y: 1 }),
      def({ ...base, nested: { b: [{ d: 2, c: 3 }, 1], a: "s" } }),
    ];
    const reorderedTasks = def(base);
    reorderedTasks.tasks.reverse();
    variants.push(reorderedTasks);
    const queued = def(base);
    queued.tasks[1]!.queue = "io";
    variants.push(queued);
    const moreDeps = def(base);
    moreDeps.tasks[1]!.dependsOn.push("c");
    variants.push(moreDeps);
    const hashes = variants.map(contentHash);
    for (const h of hashes) expect(h).not.toBe(original);
    expect(new Set(hashes).size).toBe(hashes.length);
  });
});
