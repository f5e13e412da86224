// `pnpm build`: @weft/sdk builds to ESM with type declarations (what a published package ships), and
// weftd compiles to daemon/dist, which `pnpm start` and the container image run without a TypeScript loader.
// One file, so that the two builds never write sdk/dist at the same time.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { REPO_ROOT, spawnWeftd, startTestRedis } from "./support/index.js";
import { pollTask, RunStatus, task, value, weftClients } from "./support/weft.js";

const run = promisify(execFile);

describe("the @weft/sdk build", () => {
  it("emits ESM and .d.ts files into sdk/dist that work without the TypeScript sources", async () => {
    // What `pnpm --filter @weft/sdk build` runs.
    await run(`${REPO_ROOT}node_modules/.bin/tsc`, ["-p", "tsconfig.build.json"], {
      cwd: `${REPO_ROOT}sdk`,
      timeout: 120_000,
    });
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
  it("is what `pnpm build` makes, and `pnpm start`'s command serves a run with it", async () => {
    const build = JSON.parse(readFileSync(`${REPO_ROOT}package.json`, "utf8")).scripts;
    expect([build.build, build.start]).toEqual([
      "pnpm --filter @weft/daemon build",
      "pnpm build && node --conditions=weft-dist daemon/dist/main.js",
    ]);
    const daemonBuild = JSON.parse(readFileSync(`${REPO_ROOT}daemon/package.json`, "utf8")).scripts.build;
    expect(daemonBuild).toBe("tsc -p ../sdk/tsconfig.build.json && tsc -p tsconfig.build.json");
    for (const dir of ["sdk", "daemon"]) {
      await run(`${REPO_ROOT}node_modules/.bin/tsc`, ["-p", "tsconfig.build.json"], {
        cwd: `${REPO_ROOT}${dir}`,
        timeout: 120_000,
      });
    }
    expect(existsSync(`${REPO_ROOT}daemon/dist/main.js`)).toBe(true);
    expect(existsSync(`${REPO_ROOT}daemon/dist/engine/engine.js`)).toBe(true);
    expect(existsSync(`${REPO_ROOT}daemon/dist/config.test.js`)).toBe(false);

    const redis = await startTestRedis();
    const weftd = await spawnWeftd({ redisUrl: redis.url, compiled: true });
    try {
      // No TypeScript loader in the process: its command line is the compiled file alone.
      const cmdline = readFileSync(`/proc/${weftd.pid}/cmdline`, "utf8").split("\0");
      expect(cmdline.slice(1, 3)).toEqual(["--conditions=weft-dist", `${REPO_ROOT}daemon/dist/main.js`]);
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
