import { create } from "@bufbuild/protobuf";
import { WorkflowDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { describe, expect, it } from "vitest";
import { compileWorkflow, DEFAULT_RETRY_POLICY } from "../definitions/index.js";
import { planResume } from "./resume-plan.js";

/** a → b → c, a → d, (b, d) → e: a diamond with a tail. */
const compiled = compileWorkflow(
  create(WorkflowDefinitionSchema, {
    name: "wf",
    tasks: [
      { id: "a", handler: "h" },
      { id: "b", handler: "h", dependsOn: ["a"] },
      { id: "c", handler: "h", dependsOn: ["b"] },
      { id: "d", handler: "h", dependsOn: ["a"] },
      { id: "e", handler: "h", dependsOn: ["b", "d"] },
    ],
  }),
  { retry: DEFAULT_RETRY_POLICY, heartbeatTimeoutMs: 30_000 },
);

/** Statuses by task id, in definition order. */
function statuses(s: Record<string, string>): (i: number) => string {
  return (i) => s[compiled.idAt(i)] ?? "P";
}

describe("planResume", () => {
  it("runs again what did not succeed; a task waits for its parents that run again", () => {
    // b failed; c, e skipped before they were queued; a and d succeeded.
    const plan = planResume(compiled, statuses({ a: "S", b: "F", c: "k", d: "S", e: "k" }));
    expect(plan.tasks).toEqual([
      { id: "b", parents: 0 },
      { id: "c", parents: 1 },
      { id: "e", parents: 1 },
    ]);
    expect(plan.queued).toEqual(["b"]);
    // Only b was ever queued: c and e have no job or timer to remove.
    expect(plan.recorded).toEqual(["b"]);
  });

  it("from a named task, runs it and its descendants again even if they succeeded", () => {
    const plan = planResume(compiled, statuses({ a: "S", b: "S", c: "S", d: "F", e: "K" }), "b");
    expect(plan.tasks).toEqual([
      { id: "b", parents: 0 },
      { id: "c", parents: 1 },
      { id: "d", parents: 0 },
      { id: "e", parents: 2 },
    ]);
    expect(plan.queued).toEqual(["b", "d"]);
    expect(plan.recorded).toEqual(["b", "c", "d", "e"]);
  });

  it("a root runs again without a parent counter; a cancelled run with nothing left plans nothing", () => {
    expect(planResume(compiled, statuses({}), undefined).tasks[0]).toEqual({ id: "a", parents: "-" });
    const done = planResume(compiled, statuses({ a: "S", b: "S", c: "S", d: "S", e: "S" }));
    expect(done).toEqual({ tasks: [], queued: [], recorded: [] });
  });
});
