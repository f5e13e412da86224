import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  fromValue,
  loadWorkflowFile,
  parseWorkflowText,
  toDefinition,
  WorkflowSpecError,
  workflow,
} from "@weft/sdk";
import { describe, expect, it } from "vitest";

describe("the workflow builder", () => {
  it("produces the proto definition, with handler defaulting to the task id", () => {
    const def = workflow("etl", { description: "nightly", runTimeout: "1h", continueOnFailure: true })
      .task("extract", { queue: "ts", input: { source: "orders" }, rateLimitKey: "db" })
      .task("transform", {
        handler: "clean",
        queue: "py",
        dependsOn: ["extract"],
        retry: {
          maxAttempts: 4,
          initialBackoff: "500ms",
          maxBackoff: "1m",
          backoffCoefficient: 2,
          jitter: 0,
        },
      })
      .task("load", { dependsOn: ["extract", "transform"], timeouts: { heartbeat: 10_000 } })
      .build();
    expect(def.name).toBe("etl");
    expect(def.description).toBe("nightly");
    expect(def.runTimeout?.seconds).toBe(3600n);
    expect(def.continueOnFailure).toBe(true);
    expect(def.tasks.map((t) => [t.id, t.handler, t.queue, t.dependsOn, t.rateLimitKey])).toEqual([
      ["extract", "extract", "ts", [], "db"],
      ["transform", "clean", "py", ["extract"], ""],
      ["load", "load", "", ["extract", "transform"], ""],
    ]);
    expect(fromValue(def.tasks[0]?.input)).toEqual({ source: "orders" });
    const retry = def.tasks[1]?.retry;
    expect([
      retry?.maxAttempts,
      retry?.initialBackoff?.nanos,
      retry?.maxBackoff?.seconds,
      retry?.jitter,
    ]).toEqual([4, 500_000_000, 60n, 0]);
    expect(def.tasks[2]?.timeouts?.heartbeat?.seconds).toBe(10n);
  });

  it("rejects at compile time (and at run time) dependencies on later or unknown tasks and duplicate ids", () => {
    const base = workflow("w").task("a");
    // @ts-expect-error "b" is not defined before the task that depends on it
    expect(() => base.task("c", { dependsOn: ["b"] })).toThrow(
      'workflow "w": task "c" depends on "b", which is not defined before it',
    );
    // @ts-expect-error "a" is already a task id
    expect(() => base.task("a")).toThrow('workflow "w": duplicate task id "a"');
    // Builders are immutable: each task() returns a new one.
    const ab = base.task("b", { dependsOn: ["a"] });
    expect(toDefinition(ab).tasks.map((t) => t.id)).toEqual(["a", "b"]);
    expect(toDefinition(base).tasks.map((t) => t.id)).toEqual(["a"]);
  });
});

describe("workflow files", () => {
  const dir = mkdtempSync(join(tmpdir(), "weft-sdk-files-"));

  it("reads YAML with snake_case keys and human durations", async () => {
    const file = join(dir, "etl.yaml");
    writeFileSync(
      file,
      [
        "name: etl",
        "default_retry: { max_attempts: 5, initial_backoff: 2s }",
        "tasks:",
        "  - id: extract",
        "    queue: ts",
        "    input: { rows: [1, 2] }",
        "  - id: load",
        "    depends_on: [extract]",
        "    timeouts: { start_to_close: 5m }",
        "",
      ].join("\n"),
    );
    const spec = await loadWorkflowFile(file);
    expect(spec).toEqual({
      name: "etl",
      defaultRetry: { maxAttempts: 5, initialBackoff: "2s" },
      tasks: [
        { id: "extract", queue: "ts", input: { rows: [1, 2] } },
        { id: "load", dependsOn: ["extract"], timeouts: { startToClose: "5m" } },
      ],
    });
    const def = toDefinition(spec);
    expect(def.defaultRetry?.initialBackoff?.seconds).toBe(2n);
    expect(def.tasks[1]?.timeouts?.startToClose?.seconds).toBe(300n);
  });

  it("reads JSON with camelCase keys", async () => {
    const file = join(dir, "wf.json");
    writeFileSync(file, JSON.stringify({ name: "j", tasks: [{ id: "a" }, { id: "b", dependsOn: ["a"] }] }));
    expect(await loadWorkflowFile(file)).toEqual({
      name: "j",
      tasks: [{ id: "a" }, { id: "b", dependsOn: ["a"] }],
    });
  });

  it.each([
    ["tasks: []", "f.yaml: name: is required"],
    ["name: x", "f.yaml: tasks: is required"],
    ["name: x\ntasks: [{ id: a, dependson: [b] }]", "f.yaml: tasks[0].dependson: unknown field"],
    ["name: x\ntasks: [{ id: a, depends_on: b }]", "f.yaml: tasks[0].depends_on: must be a list"],
    [
      "name: x\ntasks: [{ id: a, retry: { initial_backoff: soon } }]",
      'tasks[0].retry.initial_backoff: "soon" is not a duration',
    ],
    ["name: x\ntasks: [{ id: 1 }]", "f.yaml: tasks[0].id: must be a string"],
    ["- a\n- b", "f.yaml: must be a mapping with name and tasks"],
    ["name: [unclosed", "f.yaml: not valid YAML or JSON"],
  ])("reports %j as %s", (text, message) => {
    let err: unknown;
    try {
      parseWorkflowText(text, "f.yaml");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WorkflowSpecError);
    expect((err as Error).message).toContain(message);
  });
});
