// `weft dev` end to end: it starts Redis, weftd and the example workers, an example run completes
// through it, and Ctrl-C (SIGINT) leaves no process behind.
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "@weft/daemon";
import { toValue } from "@weft/sdk";
import { afterAll, describe, expect, it } from "vitest";
import { ensurePythonVenv, venvCommands } from "../cli/src/dev/python-venv.js";
import { cleanEnv, runWeft, weftCommand } from "./cli-process.js";
import { REPO_ROOT, startTestRedis, waitFor, within } from "./support/index.js";
import { weftClients } from "./support/weft.js";

interface DevState {
  pid: number;
  address: string;
  processes: { name: string; pgid: number; pid: number }[];
}

/**
 * Every process whose pid or process group is one of `pids`, from /proc. An exited process that
 * init has not reaped yet (a zombie whose parent is pid 1, e.g. tsx's esbuild helper that outlived
 * its node by a moment) runs nothing and is not counted: this sandbox's pid 1 does not reap.
 */
function processesOf(pids: number[]): string[] {
  const found: string[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // Exited while we looked.
    }
    // pid (comm) state ppid pgrp …: comm may hold spaces, so split after its closing parenthesis.
    const close = stat.lastIndexOf(")");
    const [state, ppid, pgrp] = stat.slice(close + 2).split(" ");
    const pid = Number(entry);
    if (state === "Z" && ppid === "1") continue;
    if (pids.includes(pid) || pids.includes(Number(pgrp))) {
      found.push(`${pid} ${stat.slice(stat.indexOf("(") + 1, close)} ${state}`);
    }
  }
  return found;
}

/**
 * Whether this machine has the Python and Go worker toolchains (`weft dev` then uses them, and
 * makes the Python worker's virtualenv when it is missing).
 */
const onPath = (name: string) =>
  (process.env.PATH ?? "").split(":").some((d) => d !== "" && existsSync(join(d, name)));
const hasPython = existsSync(`${REPO_ROOT}workers/python/.venv/bin/python`) || onPath("python3");
const hasGo = existsSync(`${REPO_ROOT}workers/go/go.mod`) && onPath("go");

const started: ChildProcess[] = [];
afterAll(() => {
  for (const child of started) if (child.exitCode === null) child.kill("SIGKILL");
});

describe("weft dev", () => {
  it("runs the examples end to end and leaves no process behind after Ctrl-C", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "weft-dev-"));
    const address = `127.0.0.1:${await freePort()}`;
    const [node, args] = weftCommand([
      "dev",
      ...["--addr", address, "--metrics-addr", `127.0.0.1:${await freePort()}`, "--data-dir", dataDir],
    ]);
    const dev = spawn(node, args, { cwd: REPO_ROOT, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
    started.push(dev);
    let stdout = "";
    let stderr = "";
    dev.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    dev.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    const exited = new Promise<number | null>((resolve) => dev.once("exit", (code) => resolve(code)));

    await waitFor(() => stdout.includes("Press Ctrl-C to stop everything.") || dev.exitCode !== null, {
      message: "weft dev to start everything",
      timeoutMs: 150_000,
      intervalMs: 100,
    });
    expect(dev.exitCode, `weft dev exited early:\n${stdout}\n${stderr}`).toBeNull();
    expect(stdout).toContain(`  weftd      ${address} (gRPC, gRPC-Web, Connect)`);
    expect(stdout).toMatch(/^ {2}worker {5}queue ts {2}TypeScript$/m);
    // Python and Go serve their queues where their toolchains are (CI installs both); a TypeScript
    // stand-in does otherwise.
    expect(stdout).toMatch(
      hasPython
        ? /^ {2}worker {5}queue py {2}Python$/m
        : /^ {2}worker {5}queue py {2}TypeScript fallback for Python \(.+\)$/m,
    );
    expect(stdout).toMatch(
      hasGo
        ? /^ {2}worker {5}queue go {2}Go$/m
        : /^ {2}worker {5}queue go {2}TypeScript fallback for Go \(.+\)$/m,
    );
    expect(stdout).toContain("  workflows  etl v1, fan-out v1");
    expect(stdout).toContain(`  pnpm weft trigger etl --address ${address} --input`);

    const state = JSON.parse(readFileSync(join(dataDir, "dev.json"), "utf8")) as DevState;
    expect(state.pid).toBe(dev.pid);
    expect(state.processes.map((p) => p.name)).toEqual([
      "redis-server",
      "weftd",
      "worker ts",
      expect.stringMatching(/^worker py( fallback)?$/),
      expect.stringMatching(/^worker go( fallback)?$/),
    ]);
    const pids = state.processes.flatMap((p) => [p.pid, p.pgid]);
    expect(processesOf(pids).length).toBeGreaterThanOrEqual(state.processes.length * 2);

    // The ETL example, through the TypeScript, Python (or its stand-in) and Go (or its stand-in) workers.
    const etl = await runWeft(
      ["trigger", "etl", "--address", address, "--input", '{"date": "2024-05-01", "orders": 12}', "--watch"],
      {},
    );
    expect(etl.code, etl.stderr).toBe(0);
    const events = etl.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; taskId?: string; output?: unknown; workerId?: string });
    expect(events.filter((e) => e.type === "TASK_COMPLETED").map((e) => e.taskId)).toEqual([
      "extract",
      "transform",
      "aggregate",
      "load",
    ]);
    const workerOf = (task: string) =>
      events.find((e) => e.type === "TASK_STARTED" && e.taskId === task)?.workerId;
    expect(workerOf("extract")).toBe("dev-ts");
    expect(workerOf("transform") === "dev-py-ts-fallback").toBe(!hasPython);
    expect(workerOf("aggregate") === "dev-go-ts-fallback").toBe(!hasGo);
    expect(events[events.length - 1]).toMatchObject({
      type: "RUN_FINISHED",
      runStatus: "SUCCEEDED",
      output: {
        load: { date: "2024-05-01", orders: 11, customers: 4, total_eur: "606.50", top_customer: "umbrella" },
      },
    });
    const fan = await runWeft(
      ["trigger", "fan-out", "--address", address, "--input", '{"text": "to be or not to be"}', "--watch"],
      {},
    );
    expect(fan.code, fan.stderr).toBe(0);
    expect(JSON.parse(fan.stdout.trim().split("\n").pop() ?? "")).toMatchObject({
      output: {
        merge: {
          words: 6,
          unique: 4,
          top: [
            { word: "be", n: 2 },
            { word: "to", n: 2 },
            { word: "not", n: 1 },
          ],
        },
      },
    });

    // The README tour's first workflow, on the queue weft dev's TypeScript worker serves, finishes.
    const tour = weftClients(address);
    await tour.workflows.submitWorkflow({
      definition: {
        name: "hello",
        tasks: [
          { id: "greet", handler: "echo", queue: "ts", input: toValue({ who: "world" }) },
          { id: "shout", handler: "echo", queue: "ts", dependsOn: ["greet"] },
        ],
      },
    });
    const hello = await runWeft(["trigger", "hello", "--address", address, "--input", '{"n": 1}', "--watch"]);
    expect(hello.code, hello.stderr).toBe(0);
    expect(JSON.parse(hello.stdout.trim().split("\n").pop() ?? "")).toMatchObject({
      type: "RUN_FINISHED",
      runStatus: "SUCCEEDED",
      output: { shout: { task: "shout", parents: { greet: { input: { who: "world" } } } } },
    });

    // A second weft dev on the same data folder refuses to start.
    const second = await runWeft(["dev", "--data-dir", dataDir, "--addr", "127.0.0.1:0"]);
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(
      `weft dev: weft dev is already running (pid ${dev.pid}, weftd on ${address}) with its data in ${dataDir}\n`,
    );

    dev.kill("SIGINT");
    expect(await within(exited, 60_000, "weft dev to stop after SIGINT")).toBe(0);
    expect(stdout).toMatch(
      /stopping workers…\nstopping weftd…\nstopping redis-server…\nweft dev stopped\.\n$/,
    );
    expect(processesOf([...pids, dev.pid ?? 0])).toEqual([]);
    expect(existsSync(join(dataDir, "dev.json"))).toBe(false);
    expect(readdirSync(join(dataDir, "logs")).sort()).toEqual(
      expect.arrayContaining(["redis-server.log", "weftd.log", "worker-ts.log"]),
    );
  });

  it("makes the Python worker's virtualenv, says how the Go build goes, and passes --config to weftd", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-dev-venv-"));
    const venv = join(dir, "venv");
    const config = join(dir, "weft.yaml");
    writeFileSync(config, "queues:\n  emails:\n    rateLimit: { max: 5, per: 1s }\n    concurrency: 20\n");
    const address = `127.0.0.1:${await freePort()}`;
    const dev = spawnDev([
      ...[
        "--addr",
        address,
        "--metrics-addr",
        `127.0.0.1:${await freePort()}`,
        "--data-dir",
        join(dir, "data"),
      ],
      ...["--python-venv", venv, "--config", config, "--no-examples"],
    ]);
    await waitFor(
      () => dev.stdout().includes("Press Ctrl-C to stop everything.") || dev.child.exitCode !== null,
      {
        message: "weft dev to make the virtualenv and start everything",
        timeoutMs: 400_000,
        intervalMs: 200,
      },
    );
    expect(dev.child.exitCode, `weft dev exited early:\n${dev.stdout()}\n${dev.stderr()}`).toBeNull();
    const out = dev.stdout();
    expect(out).toContain(
      `starting worker ts…\nmaking the Python worker's virtualenv (once, about a minute): python3 -m venv ${venv} && ${venv}/bin/pip install -c workers/python/constraints.txt -e workers/python\n`,
    );
    expect(out).toMatch(new RegExp(`^  made ${venv} in \\d+ s\nstarting worker py…$`, "m"));
    expect(out).toMatch(/^ {2}worker {5}queue py {2}Python$/m);
    expect(existsSync(join(venv, "bin", "python"))).toBe(true);
    if (hasGo) {
      expect(out).toMatch(
        /^starting worker go…\n {2}building the Go example worker \(go build in examples\/handlers\/go; .*\)…\n( {2}still at it \(\d+ s\)…\n)* {2}done in \d+ s$/m,
      );
    }
    expect(out).toContain(`  config     ${config}\n`);
    const { queue } = await weftClients(address).admin.getQueue({ name: "emails" });
    expect([queue?.rateLimit?.max, queue?.concurrency]).toEqual([5, 20]);

    dev.child.kill("SIGINT");
    expect(await within(dev.exited, 60_000, "weft dev to stop after SIGINT")).toBe(0);
  });

  it("uses the Redis of REDIS_URL instead of starting one", async () => {
    const redis = await startTestRedis();
    try {
      const dir = mkdtempSync(join(tmpdir(), "weft-dev-redis-"));
      const address = `127.0.0.1:${await freePort()}`;
      const dev = spawnDev(
        [
          ...["--addr", address, "--metrics-addr", `127.0.0.1:${await freePort()}`, "--data-dir", dir],
          ...["--no-workers", "--no-examples"],
        ],
        { REDIS_URL: redis.url },
      );
      await waitFor(
        () => dev.stdout().includes("Press Ctrl-C to stop everything.") || dev.child.exitCode !== null,
        {
          message: "weft dev to start on REDIS_URL",
          timeoutMs: 90_000,
          intervalMs: 100,
        },
      );
      expect(dev.child.exitCode, `weft dev exited early:\n${dev.stdout()}\n${dev.stderr()}`).toBeNull();
      expect(dev.stdout()).not.toContain("starting redis-server");
      expect(dev.stdout()).toContain(`  redis      ${redis.url}\n`);
      dev.child.kill("SIGINT");
      expect(await within(dev.exited, 60_000, "weft dev to stop after SIGINT")).toBe(0);
      expect(existsSync(join(dir, "redis"))).toBe(false);
    } finally {
      await redis.close();
    }
  });

  it("refuses a --config file that does not exist", async () => {
    expect(await runWeft(["dev", "--config", "/nonexistent/weft.yaml"])).toEqual({
      code: 2,
      stdout: "",
      stderr: "weft dev: --config: no such file /nonexistent/weft.yaml; see weft dev --help\n",
    });
  });

  it("says how to install redis-server when there is none and no --redis-url", async () => {
    const emptyPath = mkdtempSync(join(tmpdir(), "weft-nopath-"));
    const res = await runWeft(["dev", "--data-dir", join(emptyPath, "data")], { PATH: emptyPath });
    expect(res).toEqual({
      code: 1,
      stdout: "weft dev stopped.\n",
      stderr:
        "weft dev: redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install redis-server) " +
        "or give weft dev a Redis with --redis-url redis://host:6379\n",
    });
  });
});

describe("the Python worker's virtualenv", () => {
  /** A folder for PATH holding `python3` as the given shell script (or no python3 at all). */
  function pathWith(script: string | undefined): string {
    const bin = mkdtempSync(join(tmpdir(), "weft-path-"));
    if (script !== undefined) {
      writeFileSync(join(bin, "python3"), `#!/bin/sh\n${script}\n`);
      chmodSync(join(bin, "python3"), 0o755);
    }
    return bin;
  }

  it("says the exact commands to run when python3 cannot make it", async () => {
    const venv = join(mkdtempSync(join(tmpdir(), "weft-venv-")), "venv");
    const said: string[] = [];
    const bin = pathWith(
      'echo "The virtual environment was not created successfully because ensurepip is not available." >&2; exit 1',
    );
    const result = await ensurePythonVenv({ venv, env: { PATH: bin }, say: (l) => said.push(l) });
    const commands = `python3 -m venv ${venv} && ${venv}/bin/pip install -c workers/python/constraints.txt -e workers/python`;
    expect(venvCommands(venv)).toBe(commands);
    const reason = `could not make the virtualenv (The virtual environment was not created successfully because ensurepip is not available.); run: ${commands}`;
    expect(result).toEqual({ python: undefined, reason });
    expect(said).toEqual([
      `making the Python worker's virtualenv (once, about a minute): ${commands}\n`,
      `  ${reason}\n`,
    ]);
  });

  it("says what to run when there is no python3", async () => {
    const result = await ensurePythonVenv({
      venv: `${REPO_ROOT}workers/python/.venv-missing`,
      env: { PATH: pathWith(undefined) },
      say: () => {},
    });
    expect(result).toEqual({
      python: undefined,
      reason:
        "python3 not found on PATH; with Python 3.11 or later, run: python3 -m venv workers/python/.venv-missing && workers/python/.venv-missing/bin/pip install -c workers/python/constraints.txt -e workers/python",
    });
  });
});

/** `weft dev args…` as a child, with what it printed so far. */
function spawnDev(args: string[], env: NodeJS.ProcessEnv = {}) {
  const [node, argv] = weftCommand(["dev", ...args]);
  const child = spawn(node, argv, { cwd: REPO_ROOT, env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  started.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => {
    stdout += b.toString();
  });
  child.stderr.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}
