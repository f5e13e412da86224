import { execFile } from "node:child_process";
import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { REPO_ROOT, weftdCommand } from "./support/index.js";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runWeftd(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const [node, argv] = weftdCommand(args);
  return new Promise((resolve) => {
    execFile(
      node,
      argv,
      { cwd: REPO_ROOT, env: { PATH: process.env.PATH, ...env }, timeout: 30_000 },
      (err, stdout, stderr) =>
        resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : null, stdout, stderr }),
    );
  });
}

describe("weftd command line", () => {
  it("--help lists the flags and exits 0", async () => {
    const run = await runWeftd(["--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("Usage: weftd [flags]");
    expect(run.stdout).toContain("env: WEFT_REDIS_URL, REDIS_URL; default: none");
  });

  it("exits 2 naming the bad flag or variable", async () => {
    expect(await runWeftd(["--max-request-bytes", "lots"])).toMatchObject({
      code: 2,
      stderr: 'weftd: --max-request-bytes="lots": expected a size such as 512B, 64KiB, 4MiB or 1GB\n',
    });
    expect((await runWeftd([], { WEFT_LOG_LEVEL: "chatty" })).stderr).toMatch(
      /^weftd: WEFT_LOG_LEVEL="chatty"/,
    );
  });

  it("exits 1 with a clear message when the port is taken", async () => {
    const blocker = createServer().listen(0, "127.0.0.1");
    await new Promise((resolve) => blocker.once("listening", resolve));
    const { port } = blocker.address() as { port: number };
    try {
      const run = await runWeftd([
        "--addr",
        `127.0.0.1:${port}`,
        "--metrics-addr",
        "127.0.0.1:0",
        "--redis-url",
        "redis://127.0.0.1:1",
        "--insecure",
      ]);
      expect(run.code).toBe(1);
      expect(run.stdout).toContain(`cannot listen on 127.0.0.1:${port}`);
      expect(run.stdout).toContain("another weftd running? use --addr");
    } finally {
      blocker.close();
    }
  });
});
