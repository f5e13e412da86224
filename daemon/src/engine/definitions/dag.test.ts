import { create, fromJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { type TaskDefinitionSchema, WorkflowDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { describe, expect, it } from "vitest";
import {
  type CompileDefaults,
  compileWorkflow,
  planOf,
  rateLimitKeyProblem,
  validateWorkflow,
} from "./dag.js";
import { DEFAULT_RETRY_POLICY } from "./retry-policy.js";

type TaskInit = MessageInitShape<typeof TaskDefinitionSchema>;
type WorkflowInit = MessageInitShape<typeof WorkflowDefinitionSchema>;

const limits = { maxTasks: 100, maxPayloadBytes: 64 };
const defaults: CompileDefaults = { retry: DEFAULT_RETRY_POLICY, heartbeatTimeoutMs: 30_000 };

function t(id: string, dependsOn: string[] = [], extra: TaskInit = {}): TaskInit {
  return { id, handler: "h", dependsOn, ...extra };
}

function wf(tasks: TaskInit[], extra: WorkflowInit = {}) {
  return create(WorkflowDefinitionSchema, { name: "wf", tasks, ...extra });
}

const bigInput = fromJson(ValueSchema, { blob: "x".repeat(100) });

/** A Value of `levels` arrays, one inside the other, around a 1. */
function nested(levels: number) {
  let json: JsonValue = 1;
  for (let i = 0; i < levels; i++) json = [json];
  return fromJson(ValueSchema, json);
}

const invalid: [string, ReturnType<typeof wf>, { field: string; description: string }[]][] = [
  ["empty name", wf([t("a")], { name: "" }), [{ field: "definition.name", description: "name is required" }]],
  [
    "name with a space",
    wf([t("a")], { name: "my flow" }),
    [{ field: "definition.name", description: 'name contains " "; use only A-Z a-z 0-9 _ . -' }],
  ],
  [
    "name too long",
    wf([t("a")], { name: "n".repeat(129) }),
    [{ field: "definition.name", description: "name is 129 characters, over the limit of 128" }],
  ],
  ["no tasks", wf([]), [{ field: "definition.tasks", description: "workflow has no tasks" }]],
  [
    "too many tasks, reported once",
    wf(Array.from({ length: 101 }, () => ({ id: "", handler: "" }))),
    [{ field: "definition.tasks", description: "workflow has 101 tasks, over the limit of 100" }],
  ],
  [
    "empty task id",
    wf([t("a"), t("")]),
    [{ field: "definition.tasks[1].id", description: "id is required" }],
  ],
  [
    "task id with a slash",
    wf([t("a/b")]),
    [{ field: "definition.tasks[0].id", description: 'id contains "/"; use only A-Z a-z 0-9 _ . -' }],
  ],
  [
    "task id too long",
    wf([t("i".repeat(129))]),
    [{ field: "definition.tasks[0].id", description: "id is 129 characters, over the limit of 128" }],
  ],
  [
    "duplicate task id",
    wf([t("a"), t("b"), t("a"), t("a")]),
    [
      { field: "definition.tasks[2].id", description: 'id "a" is already used by definition.tasks[0]' },
      { field: "definition.tasks[3].id", description: 'id "a" is already used by definition.tasks[0]' },
    ],
  ],
  [
    "empty handler",
    wf([t("a", [], { handler: "" })]),
    [{ field: "definition.tasks[0].handler", description: "handler is required" }],
  ],
  [
    "queue with bad characters",
    wf([t("a", [], { queue: "q:1" })]),
    [{ field: "definition.tasks[0].queue", description: 'queue contains ":"; use only A-Z a-z 0-9 _ . -' }],
  ],
  [
    "queue too long",
    wf([t("a", [], { queue: "q".repeat(129) })]),
    [{ field: "definition.tasks[0].queue", description: "queue is 129 characters, over the limit of 128" }],
  ],
  [
    "unknown dependency",
    wf([t("a"), t("b", ["a", "x"])]),
    [{ field: "definition.tasks[1].depends_on[1]", description: 'depends_on names unknown task "x"' }],
  ],
  [
    "self dependency",
    wf([t("a", ["a"])]),
    [{ field: "definition.tasks[0].depends_on[0]", description: 'task "a" depends on itself' }],
  ],
  [
    "parent listed twice",
    wf([t("a"), t("b", ["a", "a"])]),
    [{ field: "definition.tasks[1].depends_on[1]", description: 'depends_on lists "a" twice' }],
  ],
  [
    "3-cycle",
    wf([t("a", ["c"]), t("b", ["a"]), t("c", ["b"]), t("d", ["c"])]),
    [{ field: "definition.tasks", description: "cycle: a -> b -> c -> a" }],
  ],
  [
    "cycle away from the first task starts at its lowest task",
    wf([t("root"), t("x", ["root", "z"]), t("y", ["x"]), t("z", ["y"])]),
    [{ field: "definition.tasks", description: "cycle: x -> y -> z -> x" }],
  ],
  [
    "input over the payload limit",
    wf([t("a", [], { input: bigInput })]),
    [{ field: "definition.tasks[0].input", description: "input is 111 bytes as JSON, over the limit of 64" }],
  ],
  [
    "input that is not JSON",
    wf([t("a", [], { input: { kind: { case: "numberValue", value: Number.NaN } } })]),
    [
      {
        field: "definition.tasks[0].input",
        description: "holds the number NaN; JSON numbers must be finite",
      },
    ],
  ],
  [
    "input holding an empty Value in a list",
    wf([
      t("a", [], {
        input: {
          kind: { case: "listValue", value: { values: [{ kind: { case: "nullValue", value: 0 } }, {}] } },
        },
      }),
    ]),
    [
      {
        field: "definition.tasks[0].input",
        description: "holds an empty google.protobuf.Value (no kind set) at [1]",
      },
    ],
  ],
  [
    "input nested deeper than JSON values may be",
    wf([t("a"), t("b", [], { input: nested(31) })]),
    [{ field: "definition.tasks[1].input", description: "nests 31 levels; at most 30 are allowed" }],
  ],
  [
    "retry policy out of range",
    wf([
      t("a", [], {
        retry: {
          maxAttempts: 1001,
          initialBackoff: { seconds: -1n },
          maxBackoff: { nanos: -5 },
          backoffCoefficient: 0.5,
          jitter: 1.5,
        },
      }),
    ]),
    [
      {
        field: "definition.tasks[0].retry.max_attempts",
        description: "max_attempts must be between 0 (inherit) and 1000",
      },
      {
        field: "definition.tasks[0].retry.initial_backoff",
        description: "initial_backoff must not be negative",
      },
      { field: "definition.tasks[0].retry.max_backoff", description: "max_backoff must not be negative" },
      {
        field: "definition.tasks[0].retry.backoff_coefficient",
        description: "backoff_coefficient must be 0 (inherit) or at least 1",
      },
      { field: "definition.tasks[0].retry.jitter", description: "jitter must be between 0 and 1" },
    ],
  ],
  [
    "workflow default retry and timeouts",
    wf([t("a")], {
      defaultRetry: { maxAttempts: -1, jitter: -0.1 },
      defaultTimeouts: { startToClose: { seconds: -3n } },
      runTimeout: { seconds: -1n },
    }),
    [
      {
        field: "definition.default_retry.max_attempts",
        description: "max_attempts must be between 0 (inherit) and 1000",
      },
      { field: "definition.default_retry.jitter", description: "jitter must be between 0 and 1" },
      {
        field: "definition.default_timeouts.start_to_close",
        description: "start_to_close must not be negative",
      },
      { field: "definition.run_timeout", description: "run_timeout must not be negative" },
    ],
  ],
  [
    "negative and zero task timeouts",
    wf([t("a", [], { timeouts: { scheduleToStart: { seconds: -1n }, heartbeat: {} } })]),
    [
      { field: "definition.tasks[0].timeouts.heartbeat", description: "heartbeat must be positive" },
      {
        field: "definition.tasks[0].timeouts.schedule_to_start",
        description: "schedule_to_start must not be negative",
      },
    ],
  ],
  [
    "rate-limit key too long",
    wf([t("a", [], { rateLimitKey: "k".repeat(257) })]),
    [
      {
        field: "definition.tasks[0].rate_limit_key",
        description: "rate_limit_key is 257 characters, over the limit of 256",
      },
    ],
  ],
  [
    "rate-limit key with a bad placeholder",
    wf([t("a", [], { rateLimitKey: "tenant-{{tenant}}" })]),
    [
      {
        field: "definition.tasks[0].rate_limit_key",
        description: 'rate_limit_key placeholder "{{tenant}}" must look like {{input.field}}',
      },
    ],
  ],
  [
    "rate-limit key with an unclosed placeholder",
    wf([t("a", [], { rateLimitKey: "tenant-{{input.tenant" })]),
    [{ field: "definition.tasks[0].rate_limit_key", description: 'rate_limit_key has an unclosed "{{"' }],
  ],
  [
    "several problems at once",
    wf([t("a", [], { handler: "" }), t("a", ["nope"])], { name: "" }),
    [
      { field: "definition.name", description: "name is required" },
      { field: "definition.tasks[1].id", description: 'id "a" is already used by definition.tasks[0]' },
      { field: "definition.tasks[0].handler", description: "handler is required" },
      { field: "definition.tasks[1].depends_on[0]", description: 'depends_on names unknown task "nope"' },
    ],
  ],
];

describe("validateWorkflow", () => {
  it.each(invalid)("%s", (_name, def, expected) => {
    expect(validateWorkflow(def, limits)).toEqual(expected);
  });

  it("accepts a valid definition with every optional field", () => {
    const def = wf(
      [
        t("fetch", [], {
          queue: "io.fast",
          input: fromJson(ValueSchema, { url: "https://x" }),
          retry: { maxAttempts: 5, jitter: 0, backoffCoefficient: 1 },
          timeouts: { heartbeat: durationFromMs(5_000) },
          rateLimitKey: "tenant-{{ input.tenant }}.{{input.region.name}}",
        }),
        t("store", ["fetch"], { rateLimitKey: "stripe-api" }),
      ],
      { defaultRetry: { maxAttempts: 1000 }, runTimeout: durationFromMs(60_000) },
    );
    expect(validateWorkflow(def, limits)).toEqual([]);
  });

  it("accepts depends_on naming a task defined later", () => {
    expect(validateWorkflow(wf([t("b", ["a"]), t("a")]), limits)).toEqual([]);
  });
});

describe("rateLimitKeyProblem", () => {
  it.each([
    ["stripe-api", undefined],
    ["tenant-{{input.tenant}}", undefined],
    ["{{input.a.b_c-d.0}}", undefined],
    ["a}}b", 'rate_limit_key has a "}}" without "{{"'],
    ["{{}}", 'rate_limit_key placeholder "{{}}" must look like {{input.field}}'],
    ["{{input}}", 'rate_limit_key placeholder "{{input}}" must look like {{input.field}}'],
    ["{{input.{{x}}}}", 'rate_limit_key placeholder "{{x}}" must look like {{input.field}}'],
  ])("%s", (key, problem) => {
    expect(rateLimitKeyProblem(key)).toBe(problem);
  });
});

describe("compileWorkflow", () => {
  const diamond = wf(
    [
      t("a", [], { input: fromJson(ValueSchema, { n: 1, list: [true, null] }), queue: "cpu" }),
      t("b", ["a"], { retry: { maxAttempts: 7 }, timeouts: { startToClose: durationFromMs(2_000) } }),
      t("c", ["a"], { rateLimitKey: "k" }),
      t("d", ["c", "b"]),
    ],
    {
      defaultRetry: { initialBackoff: durationFromMs(500), jitter: 0 },
      defaultTimeouts: { heartbeat: durationFromMs(10_000), scheduleToStart: durationFromMs(60_000) },
      runTimeout: durationFromMs(3_600_000),
      continueOnFailure: true,
    },
  );

  it("plans a diamond in layers [[a],[b,c],[d]]", () => {
    expect(validateWorkflow(diamond, limits)).toEqual([]);
    const compiled = compileWorkflow(diamond, defaults);
    expect(compiled.layers()).toEqual([["a"], ["b", "c"], ["d"]]);
    expect(compiled.roots).toEqual(["a"]);
    expect(compiled.leaves).toEqual(["d"]);
    expect(compiled.tasks.map((x) => x.id)).toEqual(["a", "b", "c", "d"]);
    expect(compiled.byId.get("d")?.parents).toEqual(["c", "b"]);
    expect(compiled.byId.get("a")?.children).toEqual(["b", "c"]);
    expect(compiled.byId.get("c")?.index).toBe(2);
    const plan = planOf(compiled);
    expect(plan.layers.map((l) => l.taskIds)).toEqual([["a"], ["b", "c"], ["d"]]);
  });

  it("resolves settings task → workflow default → daemon default", () => {
    const compiled = compileWorkflow(diamond, defaults);
    const [a, b, c] = compiled.tasks;
    expect(compiled.name).toBe("wf");
    expect(compiled.runTimeoutMs).toBe(3_600_000);
    expect(compiled.continueOnFailure).toBe(true);
    expect(a?.queue).toBe("cpu");
    expect(b?.queue).toBe("default");
    expect(a?.input).toEqual({ n: 1, list: [true, null] });
    expect(b?.input).toBeUndefined();
    expect(c?.rateLimitKey).toBe("k");
    expect(a?.retry).toEqual({
      maxAttempts: 3,
      initialBackoffMs: 500,
      backoffCoefficient: 2,
      maxBackoffMs: 100_000,
      jitter: 0,
      nonRetryableErrorTypes: [],
    });
    expect(b?.retry).toEqual({ ...a?.retry, maxAttempts: 7 });
    expect(a?.heartbeatTimeoutMs).toBe(10_000);
    expect(a?.startToCloseMs).toBe(0);
    expect(b?.startToCloseMs).toBe(2_000);
    expect(a?.scheduleToStartMs).toBe(60_000);

    const bare = compileWorkflow(wf([t("x")]), defaults).tasks[0];
    expect(bare?.retry).toEqual(DEFAULT_RETRY_POLICY);
    expect(bare?.heartbeatTimeoutMs).toBe(30_000);
    expect(bare?.scheduleToStartMs).toBe(0);
  });

  it("lists parents once in depends_on order and children in definition order", () => {
    const compiled = compileWorkflow(
      wf([t("z"), t("a"), t("m", ["z", "a", "z"]), t("b", ["a"]), t("c", ["m", "b"])]),
      defaults,
    );
    expect(compiled.size).toBe(5);
    expect(compiled.byId.get("m")?.parents).toEqual(["z", "a"]);
    expect(compiled.parentCount(2)).toBe(2);
    expect(compiled.byId.get("a")?.children).toEqual(["m", "b"]);
    expect(compiled.idAt(4)).toBe("c");
    expect(compiled.roots).toEqual(["z", "a"]);
    expect(compiled.leaves).toEqual(["c"]);
    expect(compiled.layers()).toEqual([["z", "a"], ["m", "b"], ["c"]]);
    expect(compiled.byId.get("nope")).toBeUndefined();
  });

  it("makes tasks that serialise without the graph behind them (safe to log)", () => {
    const compiled = compileWorkflow(diamond, defaults);
    expect(JSON.stringify(compiled.byId.get("b"))).toBe('{"index":1}');
    expect(compiled.tasks.map((x) => x.id)).toEqual(["a", "b", "c", "d"]);
  });

  it("throws on a definition that did not validate", () => {
    expect(() => compileWorkflow(wf([t("a", ["b"]), t("b", ["a"])]), defaults)).toThrow(/cycle/);
    expect(() => compileWorkflow(wf([t("a", ["x"])]), defaults)).toThrow(/unknown task "x"/);
  });
});

describe("large graphs", () => {
  const N = 100_000;
  const big = { maxTasks: N, maxPayloadBytes: 1024 };

  it("validates and compiles a 100,000-task chain", () => {
    const def = wf(Array.from({ length: N }, (_, i) => t(`t${i}`, i === 0 ? [] : [`t${i - 1}`])));
    expect(validateWorkflow(def, big)).toEqual([]);
    const compiled = compileWorkflow(def, defaults);
    const layers = compiled.layers();
    expect(layers.length).toBe(N);
    expect(layers[N - 1]).toEqual([`t${N - 1}`]);
    expect(compiled.roots).toEqual(["t0"]);
    expect(compiled.leaves).toEqual([`t${N - 1}`]);
    expect(planOf(compiled).layers.length).toBe(N);
  });

  it("finds the cycle of a 100,000-task ring", () => {
    const def = wf(Array.from({ length: N }, (_, i) => t(`t${i}`, [`t${(i + N - 1) % N}`])));
    const violations = validateWorkflow(def, big);
    expect(violations).toHaveLength(1);
    expect(violations[0]?.field).toBe("definition.tasks");
    expect(violations[0]?.description.startsWith("cycle: t0 -> t1 -> t2 -> ")).toBe(true);
    expect(violations[0]?.description.endsWith(` -> t${N - 1} -> t0`)).toBe(true);
  });

  it("validates and compiles a 100,000-task wide DAG", () => {
    const middle = Array.from({ length: N - 2 }, (_, i) => `m${i}`);
    const def = wf([t("root"), ...middle.map((id) => t(id, ["root"])), t("sink", middle)]);
    expect(validateWorkflow(def, big)).toEqual([]);
    const compiled = compileWorkflow(def, defaults);
    const layers = compiled.layers();
    expect(layers.map((l) => l.length)).toEqual([1, N - 2, 1]);
    expect(layers[1]?.[0]).toBe("m0");
    expect(layers[1]?.[N - 3]).toBe(`m${N - 3}`);
    expect(compiled.byId.get("root")?.children.length).toBe(N - 2);
    expect(compiled.leaves).toEqual(["sink"]);
  });
});
