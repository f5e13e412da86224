import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess } from "./support/index.js";
import { rpcError, task, value, type WeftClients, weftClients } from "./support/weft.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({
    redisUrl: redis.url,
    args: ["--max-tasks-per-workflow", "50", "--max-payload-bytes", "1KiB"],
  });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

describe("SubmitWorkflow", () => {
  it("stores versions by content: same content → same version, new content → next version", async () => {
    const def = { name: "versioned", tasks: [task("a"), task("b", ["a"], { input: value({ x: 1, y: 2 }) })] };
    const first = await c.workflows.submitWorkflow({ definition: def });
    expect(first.created).toBe(true);
    expect(first.workflow?.version).toBe(1);
    expect(first.plan?.layers.map((l) => l.taskIds)).toEqual([["a"], ["b"]]);

    // Same content with the keys of a static input reordered: still the same version.
    const again = await c.workflows.submitWorkflow({
      definition: { ...def, tasks: [task("a"), task("b", ["a"], { input: value({ y: 2, x: 1 }) })] },
    });
    expect(again.created).toBe(false);
    expect(again.workflow?.version).toBe(1);
    expect(again.workflow?.contentHash).toBe(first.workflow?.contentHash);

    const changed = await c.workflows.submitWorkflow({ definition: { ...def, tasks: [task("a")] } });
    expect(changed.created).toBe(true);
    expect(changed.workflow?.version).toBe(2);

    const latest = await c.workflows.getWorkflow({ name: "versioned" });
    expect(latest.workflow?.version).toBe(2);
    const pinned = await c.workflows.getWorkflow({ name: "versioned", version: 1 });
    expect(pinned.workflow?.definition?.tasks.map((t) => t.id)).toEqual(["a", "b"]);
    expect(pinned.plan?.layers.map((l) => l.taskIds)).toEqual([["a"], ["b"]]);
  });

  it("validate_only returns the execution plan and stores nothing", async () => {
    const res = await c.workflows.submitWorkflow({
      validateOnly: true,
      definition: {
        name: "dry-run",
        tasks: [task("a"), task("b", ["a"]), task("c", ["a"]), task("d", ["b", "c"]), task("e")],
      },
    });
    expect(res.created).toBe(false);
    expect(res.plan?.layers.map((l) => l.taskIds)).toEqual([["a", "e"], ["b", "c"], ["d"]]);
    const err = await rpcError(c.workflows.getWorkflow({ name: "dry-run" }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toBe('workflow "dry-run" not found');
  });

  it("rejects a request without a definition", async () => {
    const err = await rpcError(c.workflows.submitWorkflow({}));
    expect([err.code, err.rawMessage]).toEqual([Code.InvalidArgument, "definition: is required"]);
  });

  const invalid: [string, object, string][] = [
    ["empty name", { name: "", tasks: [task("a")] }, "definition.name: name is required"],
    ["no tasks", { name: "w", tasks: [] }, "definition.tasks: workflow has no tasks"],
    ["empty task id", { name: "w", tasks: [task("")] }, "definition.tasks[0].id: id is required"],
    [
      "task id with a bad character",
      { name: "w", tasks: [task("a/b")] },
      'definition.tasks[0].id: id contains "/"; use only A-Z a-z 0-9 _ . -',
    ],
    [
      "task id too long",
      { name: "w", tasks: [task("x".repeat(129))] },
      "definition.tasks[0].id: id is 129 characters, over the limit of 128",
    ],
    [
      "duplicate task id",
      { name: "w", tasks: [task("a"), task("a")] },
      'definition.tasks[1].id: id "a" is already used by definition.tasks[0]',
    ],
    [
      "unknown dependency",
      { name: "w", tasks: [task("a"), task("b", ["nope"])] },
      'definition.tasks[1].depends_on[0]: depends_on names unknown task "nope"',
    ],
    [
      "self dependency",
      { name: "w", tasks: [task("a", ["a"])] },
      'definition.tasks[0].depends_on[0]: task "a" depends on itself',
    ],
    [
      "cycle",
      { name: "w", tasks: [task("a", ["c"]), task("b", ["a"]), task("c", ["b"]), task("d")] },
      "definition.tasks: cycle: a -> b -> c -> a",
    ],
    [
      "too many tasks",
      { name: "w", tasks: Array.from({ length: 51 }, (_, i) => task(`t${i}`)) },
      "definition.tasks: workflow has 51 tasks, over the limit of 50",
    ],
    [
      "static input over the size limit",
      { name: "w", tasks: [task("a", [], { input: value("x".repeat(2000)) })] },
      "definition.tasks[0].input: input is 2002 bytes as JSON, over the limit of 1024",
    ],
  ];

  it.each(invalid)("rejects %s with INVALID_ARGUMENT naming the field", async (_, definition, message) => {
    const err = await rpcError(c.workflows.submitWorkflow({ definition }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe(message);
  });

  it("reports every violation at once, and keeps nothing of a rejected definition", async () => {
    const err = await rpcError(
      c.workflows.submitWorkflow({
        definition: { name: "bad", tasks: [task("a", ["zz"]), task("a", [], { handler: "" })] },
      }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage.split("; ")).toEqual([
      'definition.tasks[1].id: id "a" is already used by definition.tasks[0]',
      'definition.tasks[0].depends_on[0]: depends_on names unknown task "zz"',
      "definition.tasks[1].handler: handler is required",
    ]);
    expect((await rpcError(c.workflows.getWorkflow({ name: "bad" }))).code).toBe(Code.NotFound);
  });
});

describe("GetWorkflow and ListWorkflows", () => {
  it("answers NOT_FOUND naming the workflow or the version", async () => {
    await c.workflows.submitWorkflow({ definition: { name: "one-version", tasks: [task("a")] } });
    const missing = await rpcError(c.workflows.getWorkflow({ name: "no-such" }));
    expect([missing.code, missing.rawMessage]).toEqual([Code.NotFound, 'workflow "no-such" not found']);
    const version = await rpcError(c.workflows.getWorkflow({ name: "one-version", version: 7 }));
    expect([version.code, version.rawMessage]).toEqual([
      Code.NotFound,
      'workflow "one-version" has no version 7 (latest is 1)',
    ]);
    const bad = await rpcError(c.workflows.getWorkflow({ name: "" }));
    expect([bad.code, bad.rawMessage]).toEqual([Code.InvalidArgument, "name: is required"]);
  });

  it("lists workflows by name, page by page", async () => {
    for (const name of ["list-c", "list-a", "list-b"]) {
      await c.workflows.submitWorkflow({ definition: { name, tasks: [task("a"), task("b")] } });
    }
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await c.workflows.listWorkflows({ pageSize: 2, pageToken });
      expect(page.workflows.length).toBeLessThanOrEqual(2);
      seen.push(...page.workflows.map((w) => w.name));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "" && pages < 50);
    const listed = seen.filter((n) => n.startsWith("list-"));
    expect(listed).toEqual(["list-a", "list-b", "list-c"]);
    expect(seen).toEqual([...seen].sort());
    const summary = (await c.workflows.listWorkflows({ pageSize: 1000 })).workflows.find(
      (w) => w.name === "list-a",
    );
    expect([summary?.latestVersion, summary?.taskCount]).toEqual([1, 2]);
    const err = await rpcError(c.workflows.listWorkflows({ pageSize: 5000 }));
    expect([err.code, err.rawMessage]).toEqual([
      Code.InvalidArgument,
      "page_size: must be between 0 and 1000",
    ]);
  });
});
