// `pnpm build`: @weft/sdk builds to ESM with type declarations (what a published package ships), and
// weftd compiles to daemon/dist, which `pnpm start` and the container image run without a TypeScript loader.
// One file and one build, so that no two builds write sdk/dist at the same time.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT, spawnWeftd, startTestRedis } from "./support/index.js";
import { pollTask, RunStatus, task, value, weftClients } from "./support/weft.js";
import { compiledWeftdCommand } from "./support/weftd.js";

const run = promisify(execFile);

// What `pnpm build` makes, once for both tests.
beforeAll(async () => {
  await run("pnpm", ["build"], { cwd: REPO_ROOT, timeout: 120_000 });
}, 130_000);

describe("the @weft/sdk build", () => {
  it("emits ESM and .d.ts files into sdk/dist that work without the TypeScript sources", async () => {
    const dist = `${REPO_ROOT}sdk/dist/`;
    for (const file of ["index.js", "index.d.ts", "client.d.ts", "gen/weft/v1/workflow_service_pb.js"]) {
      expect(existsSync(dist + file), file).toBe(true);
    }
    expect(readFileSync(`${dist}index.d.ts`, "utf8")).toContain("createWeftClient");
    const sdk = (await import(pathToFileURL(`${dist}index.js`).href)) as typeof import("@weft/sdk");
    const def = sdk
      .workflow("built")
      .task("a")
      .task("b", { dependsOn: ["a"] })
      .build();
    expect(def.tasks.map((t) => [t.id, t.dependsOn])).toEqual([
      ["a", []],
      ["b", ["a"]],
    ]);
    expect(typeof sdk.createWeftClient).toBe("function");
    const publish = JSON.parse(readFileSync(`${REPO_ROOT}sdk/package.json`, "utf8")).publishConfig.exports[
      "."
    ];
    expect(publish).toEqual({ types: "./dist/index.d.ts", import: "./dist/index.js" });
  });
});

describe("the compiled weftd", () => {
  it("serves a run with `pnpm start`'s command and no TypeScript loader in the process", async () => {
    const [, startArgs] = compiledWeftdCommand([]);
    const { start } = JSON.parse(readFileSync(`${REPO_ROOT}package.json`, "utf8")).scripts;
    expect(start).toBe("pnpm build && node --conditions=weft-dist daemon/dist/main.js");
    expect(startArgs).toEqual(["--conditions=weft-dist", `${REPO_ROOT}daemon/dist/main.js`]);
    expect(existsSync(`${REPO_ROOT}daemon/dist/engine/engine.js`)).toBe(true);
    expect(existsSync(`${REPO_ROOT}daemon/dist/config.test.js`)).toBe(false);

    const redis = await startTestRedis();
    const weftd = await spawnWeftd({ redisUrl: redis.url, compiled: true });
    try {
      const cmdline = readFileSync(`/proc/${weftd.pid}/cmdline`, "utf8").split("\0");
      expect(cmdline.slice(1, 3)).toEqual(startArgs);
      const c = weftClients(weftd.address);
      await c.workflows.submitWorkflow({
        definition: { name: "built", tasks: [task("only", [], { queue: "built" })] },
      });
      const { run: started } = await c.workflows.trigger({ workflow: "built", input: value({ n: 1 }) });
      const assignment = await pollTask(c, "built");
      await c.workers.completeTask({ leaseId: assignment.leaseId, output: value({ ok: true }) });
      const finished = await c.workflows.getRun({ runId: started?.id ?? "" });
      expect(finished.run?.status).toBe(RunStatus.SUCCEEDED);
    } finally {
      await weftd.stop();
      await redis.stop();
    }
  });
});
