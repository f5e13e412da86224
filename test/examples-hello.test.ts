// The README's first SDK program, examples/sdk/hello.ts, run as the README says
// (`pnpm tsx examples/sdk/hello.ts`) against a weftd with the examples' TypeScript worker on "ts",
// as under `weft dev`; and the README shows that file as it is.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { Worker } from "@weft/worker";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { handlers } from "../examples/handlers/ts/handlers.js";
import {
  REPO_ROOT,
  type RedisServer,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
} from "./support/index.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let worker: Worker;
let working: Promise<void>;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
  worker = new Worker({ address: weftd.address, queue: "ts", handlers, workerId: "examples-ts" });
  working = worker.run();
});

afterAll(async () => {
  await worker?.close();
  await working;
  await weftd?.stop();
  await redis?.close();
});

/** Runs `pnpm tsx examples/sdk/hello.ts` from the repository root against the test weftd. */
function runHello(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("WEFT_")));
  return new Promise((resolve) => {
    execFile(
      "pnpm",
      ["-s", "tsx", "examples/sdk/hello.ts"],
      { cwd: REPO_ROOT, env: { ...env, WEFT_ADDRESS: weftd.address }, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : null, stdout, stderr }),
    );
  });
}

describe("examples/sdk/hello.ts", () => {
  it("submits hello-sdk, runs it through the echo handler and prints its output; once per key", async () => {
    const first = await runHello();
    expect(first.code, first.stderr).toBe(0);
    const match = /^run ([0-9a-f-]{36}): (.+)\n$/.exec(first.stdout);
    expect(match, first.stdout).not.toBeNull();
    const greet = { task: "greet", input: { who: "world" }, runInput: { n: 1 }, parents: {} };
    expect(JSON.parse(match?.[2] ?? "")).toEqual({
      shout: { task: "shout", input: null, runInput: { n: 1 }, parents: { greet } },
    });
    // The same idempotency key: the same run, not a second one.
    const second = await runHello();
    expect(second).toEqual({ code: 0, stdout: first.stdout, stderr: "" });
  });

  it("is what the README shows", () => {
    const program = readFileSync(`${REPO_ROOT}examples/sdk/hello.ts`, "utf8");
    const readme = readFileSync(`${REPO_ROOT}README.md`, "utf8");
    expect(readme).toContain(`\`\`\`ts\n${program}\`\`\``);
  });
});
