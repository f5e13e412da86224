// The live view of `weft watch`, drawn in a real pseudo-terminal: tmux runs the command and
// capture-pane reads the screen.
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createWeftClient, type WeftClient, workflow } from "@weft/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { weftCommand } from "./cli-process.js";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import { pollTask, weftClients } from "./support/weft.js";
import { spawnWorker, type WorkerProcess } from "./support/worker-process.js";

const socket = `weft-test-${randomUUID().slice(0, 8)}`;
let redis: RedisServer;
let weftd: WeftdProcess;
let worker: WorkerProcess;
let client: WeftClient;
let gate: string;
let dir: string;
const queue = `live-${randomUUID().slice(0, 8)}`;

function tmux(...args: string[]): string {
  return execFileSync("tmux", ["-u", "-L", socket, ...args], { encoding: "utf8" });
}

/**
 * Starts `weft args…` in a 100×60 terminal. The shell then writes the exit status to a file and
 * waits on `read`, so the pane (and its last screen) stays as the command left it.
 */
function startInTerminal(session: string, args: string[]): void {
  const [node, argv] = weftCommand(args);
  const quoted = [node, ...argv].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  const env = `env NO_COLOR=1 WEFT_ADDRESS=${weftd.address}`;
  const status = join(dir, `${session}.status`);
  tmux(
    "new-session",
    "-d",
    "-s",
    session,
    "-x",
    "100",
    "-y",
    "60",
    `${env} ${quoted}; echo $? > ${status}; read _`,
  );
}

function screen(session: string): string {
  // -J joins lines the terminal wrapped (and keeps trailing blanks, trimmed here).
  return tmux("capture-pane", "-p", "-J", "-t", session)
    .split("\n")
    .map((l) => l.trimEnd())
    .join("\n");
}

/** The exit status once the command in the pane ended. */
function exitStatus(session: string): number | undefined {
  const file = join(dir, `${session}.status`);
  return existsSync(file) && readFileSync(file, "utf8").endsWith("\n")
    ? Number(readFileSync(file, "utf8"))
    : undefined;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "weft-live-"));
  gate = join(dir, "gate");
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
  worker = await spawnWorker({ address: weftd.address, queue, env: { WEFT_TEST_GATE: gate } });
  client = createWeftClient({ address: weftd.address });
});

afterAll(async () => {
  try {
    tmux("kill-server");
  } catch {
    // No session left.
  }
  client?.close();
  await worker?.stop();
  await weftd?.stop();
  await redis?.close();
});

describe("weft watch on a terminal", () => {
  it("draws one line per task, a progress bar that fills, then the output", async () => {
    const name = `live-${randomUUID().slice(0, 8)}`;
    await client.submitWorkflow(
      workflow(name)
        .task("extract", { handler: "echo", queue })
        .task("slow-step", { handler: "gated", queue, dependsOn: ["extract"] })
        .task("load", { handler: "echo", queue, dependsOn: ["slow-step"] }),
    );
    const { run } = await client.trigger(name, { n: 1 });
    startInTerminal("ok", ["watch", run.id]);

    // Mid-run: extract done, slow-step running (held by the gate), load pending.
    const mid = await waitFor(
      () => {
        const s = screen("ok");
        return s.includes("1/3 tasks") && /▶ slow-step +RUNNING +attempt 1\/3 /.test(s) ? s : undefined;
      },
      { message: "the live view to show the run in progress", timeoutMs: 30_000 },
    );
    const lines = mid.split("\n");
    expect(lines[0]).toMatch(new RegExp(`^run ${run.id}  ${name} v1  RUNNING  \\S+$`));
    expect(lines[1]).toBe(`[${"█".repeat(10)}${"░".repeat(20)}]  1/3 tasks`);
    expect(lines[2]).toMatch(/^ {2}✔ extract +SUCCEEDED +attempt 1\/3 +\d+(ms|\.\ds)$/);
    expect(lines[3]).toMatch(/^ {2}▶ slow-step +RUNNING +attempt 1\/3 +\d+(ms|\.\ds)$/);
    expect(lines[4]).toBe("  · load       PENDING");

    writeFileSync(gate, "open");
    const done = await waitFor(() => (exitStatus("ok") !== undefined ? screen("ok") : undefined), {
      message: "weft watch to exit after the run finished",
      timeoutMs: 30_000,
    });
    expect(exitStatus("ok")).toBe(0);
    const final = done.split("\n");
    expect(final[0]).toMatch(new RegExp(`^run ${run.id}  ${name} v1  SUCCEEDED  \\S+$`));
    expect(final[1]).toBe(`[${"█".repeat(30)}]  3/3 tasks`);
    expect(final.slice(2, 5).map((l) => l.replace(/ +\d+(ms|\.\ds)$/, ""))).toEqual([
      "  ✔ extract    SUCCEEDED  attempt 1/3",
      "  ✔ slow-step  SUCCEEDED  attempt 1/3",
      "  ✔ load       SUCCEEDED  attempt 1/3",
    ]);
    expect(final[5]).toBe("output:");
    const output = final.slice(6).join("\n");
    expect(JSON.parse(output)).toMatchObject({
      load: { task: "load", parents: { "slow-step": { task: "slow-step" } } },
    });
    // One frame on the screen: the header is drawn once, redrawn in place.
    expect(done.split(`run ${run.id}`).length).toBe(2);
  });

  it("shows the failed task with its error and exits 1 (trigger --watch)", async () => {
    const name = `live-fail-${randomUUID().slice(0, 8)}`;
    const manual = `${name}-manual`;
    await client.submitWorkflow(
      workflow(name)
        .task("a", { handler: "x", queue: manual })
        .task("b", { handler: "x", queue: manual, dependsOn: ["a"] }),
    );
    startInTerminal("fail", ["trigger", name, "--watch"]);
    await waitFor(() => screen("fail").includes("0/2 tasks"), { message: "the live view to start" });
    const raw = weftClients(weftd.address);
    const a = await pollTask(raw, manual);
    await raw.workers.failTask({
      leaseId: a.leaseId,
      error: { type: "IOError", message: "disk full" },
      retryable: false,
    });
    const done = await waitFor(() => (exitStatus("fail") !== undefined ? screen("fail") : undefined), {
      message: "weft trigger --watch to exit",
      timeoutMs: 30_000,
    });
    expect(exitStatus("fail")).toBe(1);
    const lines = done.split("\n");
    expect(lines[0]).toMatch(/^run \S+ started: workflow live-fail-\S+ version 1$/);
    expect(lines[1]).toMatch(/^run \S+ {2}live-fail-\S+ v1 {2}FAILED {2}\S+$/);
    expect(lines[2]).toBe(`[${"█".repeat(30)}]  2/2 tasks`);
    expect(lines[3]).toMatch(/^ {2}✖ a +FAILED +attempt 1\/3 +\S+ +IOError: disk full$/);
    expect(lines[4]).toBe("  - b     SKIPPED");
    expect(lines[5]).toBe("a failed (attempt 1/3): IOError: disk full");
    expect(lines[6]).toMatch(
      /^weft: run "\S+" failed: task "a" failed \(attempt 1\/3\): IOError: disk full$/,
    );
  });
});
