import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cells, DURATION, runWeft, withoutTimes } from "./cli-process.js";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import { pollTask, type WeftClients, weftClients } from "./support/weft.js";
import { spawnWorker, type WorkerProcess } from "./support/worker-process.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let worker: WorkerProcess;
let raw: WeftClients;
let env: NodeJS.ProcessEnv;
let dir: string;
/** Queue served by a TypeScript worker with the test handlers (echo, add, …). */
const served = `cli-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
  raw = weftClients(weftd.address);
  env = { WEFT_ADDRESS: weftd.address };
  worker = await spawnWorker({ address: weftd.address, queue: served });
  dir = mkdtempSync(join(tmpdir(), "weft-cli-"));
});

afterAll(async () => {
  await worker?.stop();
  await weftd?.stop();
  await redis?.close();
});

/** Writes a workflow file and returns its path. */
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** A diamond a → (b, c) → d of echo tasks on `queue`, as YAML. */
function diamond(name: string, queue: string): string {
  return [
    `name: ${name}`,
    "tasks:",
    `  - { id: a, handler: echo, queue: ${queue}, input: { step: 1 } }`,
    `  - { id: b, handler: echo, queue: ${queue}, depends_on: [a] }`,
    `  - { id: c, handler: echo, queue: ${queue}, depends_on: [a] }`,
    `  - { id: d, handler: echo, queue: ${queue}, depends_on: [b, c] }`,
    "",
  ].join("\n");
}

function uniqueName(label: string): string {
  return `${label}-${randomUUID().slice(0, 8)}`;
}

describe("help, usage errors and exit codes", () => {
  it("prints the command list with --help (exit 0) and without a command (exit 2)", async () => {
    const help = await runWeft(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: weft <command> [arguments] [options]");
    for (const command of ["dev", "workflows submit", "trigger", "watch", "runs ls", "runs get", "cancel"]) {
      expect(help.stdout).toMatch(new RegExp(`^  ${command} +\\S`, "m"));
    }
    const bare = await runWeft([]);
    expect([bare.code, bare.stdout]).toEqual([2, help.stdout]);
  });

  it.each([
    ["dev"],
    ["workflows", "submit"],
    ["workflows", "ls"],
    ["workflows", "get"],
    ["trigger"],
    ["watch"],
    ["runs", "ls"],
    ["runs", "get"],
    ["cancel"],
    ["queues", "ls"],
  ])("has --help on %s", async (...path) => {
    const res = await runWeft([...path, "--help"]);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`Usage: weft ${path.join(" ")}`);
    expect(res.stdout).toContain("--address <host:port|url>");
  });

  it("rejects unknown commands, unknown flags and missing arguments with exit 2 and one line", async () => {
    expect(await runWeft(["frobnicate"])).toEqual({
      code: 2,
      stdout: "",
      stderr: 'weft: unknown command "frobnicate"; see weft --help\n',
    });
    expect(await runWeft(["runs", "rm"])).toEqual({
      code: 2,
      stdout: "",
      stderr: 'weft: unknown command "runs rm"; see weft --help\n',
    });
    const flag = await runWeft(["runs", "ls", "--bogus"]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toBe("weft runs ls: unknown option --bogus; see weft runs ls --help\n");
    expect(await runWeft(["watch"])).toEqual({
      code: 2,
      stdout: "",
      stderr: "weft: RUN_ID is required; see weft watch --help\n",
    });
    expect(await runWeft(["trigger", "x", "--input", "{nope"], env)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/^weft: --input is not valid JSON: .*; see weft trigger --help\n$/),
    });
    expect(await runWeft(["runs", "ls", "--status", "lost"], env)).toEqual({
      code: 2,
      stdout: "",
      stderr:
        'weft: --status: unknown status "lost" (running, succeeded, failed, cancelled, timed_out); see weft runs ls --help\n',
    });
  });

  it("exits 4 with one line when weftd cannot be reached, from --address or WEFT_ADDRESS", async () => {
    const flag = await runWeft(["runs", "ls", "--address", "127.0.0.1:1"]);
    expect(flag.code).toBe(4);
    expect(flag.stderr).toBe(
      "weft: no weftd at 127.0.0.1:1: connection refused (is weftd running? `pnpm weft dev` starts one)\n",
    );
    const fromEnv = await runWeft(["workflows", "ls"], { WEFT_ADDRESS: "127.0.0.1:1" });
    expect(fromEnv.code).toBe(4);
  });

  it("exits 3 naming what is missing", async () => {
    const runId = "00000000-0000-4000-8000-000000000000";
    for (const args of [
      ["runs", "get", runId],
      ["watch", runId],
      ["cancel", runId],
    ]) {
      expect(await runWeft(args, env)).toEqual({
        code: 3,
        stdout: "",
        stderr: `weft: run "${runId}" not found\n`,
      });
    }
    expect(await runWeft(["workflows", "get", "nope"], env)).toEqual({
      code: 3,
      stdout: "",
      stderr: 'weft: workflow "nope" not found\n',
    });
    expect(await runWeft(["trigger", "nope"], env)).toEqual({
      code: 3,
      stdout: "",
      stderr: 'weft: workflow "nope" not found\n',
    });
  });
});

describe("weft workflows", () => {
  it("submits a YAML file, prints its plan, and keeps the version for the same content", async () => {
    const name = uniqueName("diamond");
    const path = file(`${name}.yaml`, diamond(name, "q"));
    const dry = await runWeft(["workflows", "submit", path, "--validate-only"], env);
    expect(dry).toEqual({
      code: 0,
      stderr: "",
      stdout: `workflow ${name} is valid (nothing stored): 4 tasks in 3 layers\nlayers:\n  1: a\n  2: b, c\n  3: d\n`,
    });
    const first = await runWeft(["workflows", "submit", path], env);
    expect(first).toEqual({
      code: 0,
      stderr: "",
      stdout: `workflow ${name} version 1 created\nlayers:\n  1: a\n  2: b, c\n  3: d\n`,
    });
    const again = await runWeft(["workflows", "submit", path], env);
    expect(again.stdout.split("\n")[0]).toBe(`workflow ${name} version 1 unchanged (same content)`);
    const json = file(`${name}.json`, JSON.stringify({ name, tasks: [{ id: "only", handler: "echo" }] }));
    const second = await runWeft(["workflows", "submit", json, "--json"], env);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({
      created: true,
      layers: [["only"]],
      workflow: { version: 2 },
    });
  });

  it("rejects invalid workflows with exit 2 and the problem on one line", async () => {
    const cycle = file(
      "cycle.yaml",
      "name: cyc\ntasks:\n  - { id: a, depends_on: [b] }\n  - { id: b, depends_on: [a] }\n",
    );
    expect(await runWeft(["workflows", "submit", cycle], env)).toEqual({
      code: 2,
      stdout: "",
      stderr: "weft: definition.tasks: cycle: a -> b -> a\n",
    });
    const typo = file("typo.yaml", "name: t\ntasks:\n  - { id: a, dependson: [b] }\n");
    const bad = await runWeft(["workflows", "submit", typo], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(
      `weft: ${typo}: tasks[0].dependson: unknown field (expected one of id, handler, queue, depends_on, input, retry, timeouts, rate_limit_key)\n`,
    );
    const missing = await runWeft(["workflows", "submit", join(dir, "missing.yaml")], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^weft: ENOENT: no such file or directory, open '.*missing\.yaml'\n$/);
  });

  it("lists workflows and shows one with its tasks and plan", async () => {
    const own = await spawnWeftd({ redisUrl: redis.url });
    const ownEnv = { WEFT_ADDRESS: own.address };
    try {
      expect(await runWeft(["workflows", "ls"], ownEnv)).toEqual({
        code: 0,
        stderr: "",
        stdout: "no workflows\n",
      });
      await runWeft(["workflows", "submit", file("wf-b.yaml", diamond("wf-b", "q"))], ownEnv);
      await runWeft(
        ["workflows", "submit", file("wf-a.yaml", "name: wf-a\ndescription: one task\ntasks: [{ id: x }]\n")],
        ownEnv,
      );
      const ls = await runWeft(["workflows", "ls"], ownEnv);
      expect(ls.code).toBe(0);
      expect(cells(withoutTimes(ls.stdout))).toEqual([
        ["NAME", "VERSION", "TASKS", "UPDATED"],
        ["wf-a", "1", "1", "<time>"],
        ["wf-b", "1", "4", "<time>"],
      ]);
      const get = await runWeft(["workflows", "get", "wf-b"], ownEnv);
      expect(withoutTimes(get.stdout)).toBe(
        [
          "workflow wf-b version 1",
          "created: <time>",
          "TASK  HANDLER  QUEUE  DEPENDS ON",
          "a     echo     q      -",
          "b     echo     q      a",
          "c     echo     q      a",
          "d     echo     q      b,c",
          "layers:",
          "  1: a",
          "  2: b, c",
          "  3: d",
          "",
        ].join("\n"),
      );
      const a = await runWeft(["workflows", "get", "wf-a", "--version", "1"], ownEnv);
      expect(a.stdout.split("\n").slice(0, 2)).toEqual(["workflow wf-a version 1", "description: one task"]);
      expect(a.stdout).toContain("x     x        default  -\n");
    } finally {
      await own.stop();
    }
  });
});

describe("weft trigger, watch, runs, cancel", () => {
  it("triggers a run, once per idempotency key, and prints its id", async () => {
    const name = uniqueName("trig");
    await runWeft(["workflows", "submit", file(`${name}.yaml`, diamond(name, `${name}-idle`))], env);
    const first = await runWeft(
      ["trigger", name, "--input", '{"n": 1}', "--idempotency-key", "order-7"],
      env,
    );
    expect(first.code).toBe(0);
    const id = /^run (\S+) started: workflow (\S+) version 1\n$/.exec(first.stdout);
    expect(id?.[2]).toBe(name);
    const runId = id?.[1] ?? "";
    const again = await runWeft(["trigger", name, "--idempotency-key", "order-7"], env);
    expect(again).toEqual({
      code: 0,
      stderr: "",
      stdout: `run ${runId} already exists for idempotency key "order-7" (RUNNING)\n`,
    });
    const quiet = await runWeft(["trigger", name, "-q", "--idempotency-key", "order-7"], env);
    expect(quiet.stdout).toBe(`${runId}\n`);
    const inputFile = file("input.json", '{"from": "file"}');
    const json = await runWeft(["trigger", name, "--input-file", inputFile, "--json"], env);
    expect(JSON.parse(json.stdout)).toMatchObject({
      created: true,
      run: { workflow: name, input: { from: "file" } },
    });
  });

  it("starts one run per line with --each, and none twice when the file runs again with a key", async () => {
    const name = uniqueName("each");
    await runWeft(["workflows", "submit", file(`${name}.yaml`, diamond(name, `${name}-idle`))], env);
    const lines = file(`${name}.jsonl`, '{"day": 1}\n\n{"day": 2}\n3\n');
    const first = await runWeft(["trigger", name, "--each", lines, "--idempotency-key", "backfill"], env);
    expect(first.code).toBe(0);
    const started =
      /^line 1: run (\S+) started\nline 3: run (\S+) started\nline 4: run (\S+) started\n3 runs started, 0 already existed\n$/.exec(
        first.stdout,
      );
    expect(started).not.toBeNull();
    const ids = started?.slice(1) ?? [];
    const again = await runWeft(
      ["trigger", name, "--each", lines, "--idempotency-key", "backfill", "--json"],
      env,
    );
    const runs = again.stdout
      .trim()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as {
            line: number;
            created: boolean;
            run: { id: string; input: unknown; idempotencyKey: string };
          },
      );
    expect(runs.map((r) => [r.line, r.created, r.run.id, r.run.input, r.run.idempotencyKey])).toEqual([
      [1, false, ids[0], { day: 1 }, "backfill:1"],
      [3, false, ids[1], { day: 2 }, "backfill:3"],
      [4, false, ids[2], 3, "backfill:4"],
    ]);
    expect(
      await runWeft(["trigger", name, "--each", file("bad.jsonl", '{"day": 1}\n{nope\n')], env),
    ).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/bad\.jsonl:2 is not valid JSON/),
    });
    expect(await runWeft(["trigger", name, "--each", lines, "--watch"], env)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/^weft: --each takes no --input, --input-file or --watch/),
    });
  });

  it("follows a run with --watch as JSON lines and exits 0 when it succeeds", async () => {
    const name = uniqueName("watch");
    await runWeft(["workflows", "submit", file(`${name}.yaml`, diamond(name, served))], env);
    const res = await runWeft(["trigger", name, "--input", '{"n": 2}', "--watch"], env);
    expect(res.code).toBe(0);
    const runId = /^run (\S+) started/.exec(res.stderr)?.[1] ?? "";
    const events = res.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => e.sequence)).toEqual(Array.from({ length: events.length }, (_, i) => i + 1));
    expect(new Set(events.map((e) => e.runId))).toEqual(new Set([runId]));
    expect(events[0]).toEqual({
      sequence: 1,
      type: "RUN_STARTED",
      time: expect.any(String),
      runId,
      runStatus: "RUNNING",
    });
    const started = events.find((e) => e.type === "TASK_STARTED" && e.taskId === "a");
    expect(started).toMatchObject({ attempt: 1, runStatus: "RUNNING", workerId: expect.any(String) });
    const completedA = events.find((e) => e.type === "TASK_COMPLETED" && e.taskId === "a");
    expect(completedA?.output).toEqual({ task: "a", input: { step: 1 }, parents: {} });
    const last = events[events.length - 1];
    expect(last).toMatchObject({ type: "RUN_FINISHED", runStatus: "SUCCEEDED" });
    expect(Object.keys((last?.output ?? {}) as object)).toEqual(["d"]);
    expect(
      events
        .filter((e) => e.type === "TASK_COMPLETED")
        .map((e) => e.taskId)
        .sort(),
    ).toEqual(["a", "b", "c", "d"]);

    // Watching the finished run replays the same events.
    const replay = await runWeft(["watch", runId], env);
    expect([replay.code, replay.stdout]).toEqual([0, res.stdout]);

    const get = await runWeft(["runs", "get", runId], env);
    expect(get.code).toBe(0);
    const lines = withoutTimes(get.stdout).split("\n");
    expect(lines.slice(0, 6)).toEqual([
      `run ${runId}`,
      `workflow: ${name} version 1`,
      "status: SUCCEEDED",
      "created: <time>",
      expect.stringMatching(/^finished: <time> \(\d+(ms|\.\d+s)\)$/),
      'input: {"n":2}',
    ]);
    const table = cells(lines.slice(6, 11).join("\n"));
    expect(table[0]).toEqual(["TASK", "STATUS", "ATTEMPT", "QUEUE", "WORKER", "DURATION", "ERROR"]);
    for (const [i, row] of table.slice(1).entries()) {
      expect(row.slice(0, 4)).toEqual([["a", "b", "c", "d"][i], "SUCCEEDED", "1/3", served]);
      expect(row[5]).toMatch(DURATION);
    }
    expect(JSON.parse(lines[11]?.replace(/^output: /, "") ?? "")).toMatchObject({ d: { task: "d" } });
  });

  it("exits 1 with the failed task and its error when the run fails", async () => {
    const name = uniqueName("fails");
    const queue = `${name}-manual`;
    await runWeft(["workflows", "submit", file(`${name}.yaml`, diamond(name, queue))], env);
    const runId = (await runWeft(["trigger", name, "-q"], env)).stdout.trim();
    const watching = runWeft(["watch", runId], env);
    const a = await pollTask(raw, queue);
    await raw.workers.failTask({
      leaseId: a.leaseId,
      error: { type: "ValueError", message: "row 17 is bad" },
      retryable: false,
    });
    const res = await watching;
    expect(res.code).toBe(1);
    expect(res.stderr).toBe(
      `weft: run "${runId}" failed: task "a" failed (attempt 1/3): ValueError: row 17 is bad\n`,
    );
    const events = res.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.find((e) => e.type === "TASK_FAILED")).toMatchObject({
      taskId: "a",
      attempt: 1,
      error: { type: "ValueError", message: "row 17 is bad" },
    });
    expect(events[events.length - 1]).toMatchObject({ type: "RUN_FINISHED", runStatus: "FAILED" });

    const failed = await runWeft(["runs", "ls", "--workflow", name, "--status", "failed,cancelled"], env);
    expect(cells(withoutTimes(failed.stdout))).toEqual([
      ["RUN", "WORKFLOW", "VERSION", "STATUS", "CREATED", "DURATION"],
      [runId, name, "1", "FAILED", "<time>", expect.stringMatching(DURATION)],
    ]);
    const get = await runWeft(["runs", "get", runId], env);
    expect(get.stdout).toContain(`error: `);
    expect(cells(get.stdout).find((r) => r[0] === "a")).toEqual([
      "a",
      "FAILED",
      "1/3",
      queue,
      "test-worker",
      expect.stringMatching(DURATION),
      "ValueError: row 17 is bad",
    ]);
  });

  it("cancels a run (idempotently), and watch exits 1 for it", async () => {
    const name = uniqueName("cancel");
    await runWeft(["workflows", "submit", file(`${name}.yaml`, diamond(name, `${name}-idle`))], env);
    const runId = (await runWeft(["trigger", name, "-q"], env)).stdout.trim();
    const watching = runWeft(["watch", runId], env);
    await waitFor(async () => (await raw.workflows.getRun({ runId })).run?.tasks[0]?.status === 2, {
      message: "the run's first task to be queued",
    });
    expect(await runWeft(["cancel", runId, "--reason", "not today"], env)).toEqual({
      code: 0,
      stderr: "",
      stdout: `run ${runId} cancelled: not today\n`,
    });
    expect((await runWeft(["cancel", runId], env)).stdout).toBe(`run ${runId} cancelled: not today\n`);
    const res = await watching;
    expect(res.code).toBe(1);
    expect(res.stderr).toBe(`weft: run "${runId}" was cancelled: not today\n`);

    const done = uniqueName("done");
    await runWeft(["workflows", "submit", file(`${done}.yaml`, diamond(done, served))], env);
    const ok = await runWeft(["trigger", done, "--watch"], env);
    const okId = /^run (\S+) started/.exec(ok.stderr)?.[1] ?? "";
    expect(await runWeft(["cancel", okId], env)).toEqual({
      code: 0,
      stderr: "",
      stdout: `run ${okId} already finished: SUCCEEDED\n`,
    });
  });

  it("says why a queued task waits", async () => {
    const name = uniqueName("paused");
    const queue = `${name}-q`;
    await raw.admin.updateQueue({ name: queue, paused: true });
    await runWeft(
      [
        "workflows",
        "submit",
        file(`${name}.yaml`, `name: ${name}\ntasks:\n  - { id: a, handler: echo, queue: ${queue} }\n`),
      ],
      env,
    );
    const runId = (await runWeft(["trigger", name, "-q"], env)).stdout.trim();
    await waitFor(async () => (await raw.workflows.getRun({ runId })).run?.tasks[0]?.waitingReason !== "", {
      message: "the queued task to have a waiting reason",
    });
    const get = await runWeft(["runs", "get", runId], env);
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout.split("\n").slice(-2)).toEqual([`a waits: queue "${queue}" is paused`, ""]);
    await raw.workflows.cancel({ runId });
  });

  it("lists runs newest first, with a limit and as JSON", async () => {
    const name = uniqueName("list");
    await runWeft(["workflows", "submit", file(`${name}.yaml`, diamond(name, `${name}-idle`))], env);
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await runWeft(["trigger", name, "-q"], env)).stdout.trim());
    const ls = await runWeft(["runs", "ls", "--workflow", name], env);
    expect(cells(withoutTimes(ls.stdout))).toEqual([
      ["RUN", "WORKFLOW", "VERSION", "STATUS", "CREATED", "DURATION"],
      ...[...ids].reverse().map((id) => [id, name, "1", "RUNNING", "<time>", "-"]),
    ]);
    const limited = await runWeft(["runs", "ls", "--workflow", name, "--limit", "2", "--json"], env);
    expect(
      limited.stdout
        .trim()
        .split("\n")
        .map((l) => (JSON.parse(l) as { id: string }).id),
    ).toEqual([ids[2], ids[1]]);
    expect((await runWeft(["runs", "ls", "--workflow", `${name}-none`], env)).stdout).toBe("no runs\n");
  });

  it("lists queues with their counts", async () => {
    const res = await runWeft(["queues", "ls"], env);
    expect(res.code).toBe(0);
    const rows = cells(res.stdout);
    expect(rows[0]).toEqual([
      "QUEUE",
      "WAITING",
      "ACTIVE",
      "DELAYED",
      "FAILED",
      "COMPLETED",
      "PAUSED",
      "CONCURRENCY",
      "RATE",
      "CIRCUIT",
    ]);
    expect(rows.find((r) => r[0] === served)?.slice(6)).toEqual(["no", "-", "-", "-"]);
  });
});
