// @weft/sdk builds to ESM with type declarations (what a published package ships).
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./support/index.js";

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
