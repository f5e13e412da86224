import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cells, runWeft } from "./cli-process.js";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import { TestFiles } from "./support/journal.js";
import { expectNoRunRunning } from "./support/liveness.js";
import { RunStatus, task, type WeftClients, weftClients } from "./support/weft.js";
import { spawnWorker, type WorkerProcess } from "./support/worker-process.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;
let env: NodeJS.ProcessEnv;
let worker: WorkerProcess;
const files = new TestFiles();
const queue = `clif-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
  c = weftClients(weftd.address);
  env = { WEFT_ADDRESS: weftd.address };
  await c.workflows.submitWorkflow({
    definition: {
      name: queue,
      defaultRetry: { maxAttempts: 1 },
      tasks: [task("a", [], { queue }), task("b", ["a"], { queue, handler: "flaky" })],
    },
  });
  worker = await spawnWorker({ address: weftd.address, queue, env: files.env });
});

afterAll(async () => {
  await worker?.stop();
  await weftd?.stop();
  await redis?.close();
});

async function failedRuns(n: number): Promise<string[]> {
  const { responses } = await c.workflows.batchTrigger({
    requests: Array.from({ length: n }, () => ({ workflow: queue })),
  });
  const ids = responses.map((r) => r.run?.id ?? "");
  await expectNoRunRunning(c, queue, 20_000);
  return ids;
}

describe("weft failed, weft runs resume, weft queues circuit", () => {
  it("lists, shows, discards and retries dead letters, and resumes a run", async () => {
    const [one, two, three] = await failedRuns(3);
    const ls = await runWeft(["failed", "ls", "--queue", queue], env);
    expect(ls.code).toBe(0);
    const rows = cells(ls.stdout);
    expect(rows[0]).toEqual(["ID (RUN/TASK/RESUMES)", "WORKFLOW", "QUEUE", "ATTEMPTS", "FAILED", "ERROR"]);
    expect(
      rows
        .slice(1)
        .map((r) => r[0])
        .sort(),
    ).toEqual([`${one}/b/0`, `${two}/b/0`, `${three}/b/0`].sort());
    expect(rows[1]?.[5]).toBe("Error: the downstream is down (attempt 1)");

    const get = await runWeft(["failed", "get", `${one}/b/0`], env);
    expect(get.code).toBe(0);
    expect(get.stdout).toContain(`task: b (queue ${queue}, handler flaky)`);
    expect(get.stdout).toMatch(/#1 .*: Error: the downstream is down \(attempt 1\)/);

    expect((await runWeft(["failed", "discard", `${three}/b/0`], env)).stdout).toBe(
      `discarded ${three}/b/0\n`,
    );
    const missing = await runWeft(["failed", "get", `${three}/b/0`], env);
    expect([missing.code, missing.stderr]).toEqual([3, `weft: dead letter "${three}/b/0" not found\n`]);
    const usage = await runWeft(["failed", "retry", "--queue", queue], env);
    expect([usage.code, usage.stderr]).toEqual([
      2,
      "weft: filters act on every matching entry: add --all; see weft failed retry --help\n",
    ]);

    files.raiseFlag();
    const resumed = await runWeft(["runs", "resume", one ?? "", "--watch", "--json"], env);
    expect(resumed.code).toBe(0);
    const again = await runWeft(["runs", "resume", one ?? ""], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`weft: run "${one}" succeeded: there is nothing to resume\n`);
    const bulk = await runWeft(["failed", "retry", "--all", "--queue", queue], env);
    expect([bulk.code, bulk.stdout]).toEqual([0, "1 retried (1 runs resumed)\n"]);
    await waitFor(
      async () => (await c.workflows.getRun({ runId: two ?? "" })).run?.status === RunStatus.SUCCEEDED,
      {
        message: "the retried run to succeed",
      },
    );
    expect((await runWeft(["failed", "ls", "--queue", queue], env)).stdout).toBe(
      "no tasks failed for good\n",
    );
    // The discarded run stays failed.
    expect((await c.workflows.getRun({ runId: three ?? "" })).run?.status).toBe(RunStatus.FAILED);
  }, 60_000);

  it("sets, opens, closes and shows a queue's circuit breaker", async () => {
    const set = await runWeft(
      ["queues", "circuit", queue, "--threshold", "4", "--open-duration", "10s"],
      env,
    );
    expect([set.code, set.stdout]).toEqual([
      0,
      `queue ${queue}: opens after 4 failures within 1m00s, stays open 10.0s, 1 probe when half-open\n`,
    ]);
    const open = await runWeft(["queues", "circuit", queue, "--open", "--handler", "flaky"], env);
    expect(open.code).toBe(0);
    expect(cells(open.stdout).slice(1)).toEqual([
      ["CIRCUIT", "STATE", "SINCE", "OPENED"],
      ["flaky", "open (until closed by hand), set by hand", expect.any(String), "1"],
    ]);
    const ls = cells((await runWeft(["queues", "ls"], env)).stdout);
    expect(ls.find((r) => r[0] === queue)?.at(-1)).toBe("flaky: open");
    const closed = await runWeft(["queues", "circuit", queue, "--close", "--handler", "flaky"], env);
    expect(cells(closed.stdout)[2]?.slice(0, 2)).toEqual(["flaky", "closed, set by hand"]);
    const bad = await runWeft(["queues", "circuit", queue, "--open", "--close"], env);
    expect([bad.code, bad.stderr]).toEqual([
      2,
      "weft: give one of --open, --close, the settings, --clear; see weft queues circuit --help\n",
    ]);
    const cleared = await runWeft(["queues", "circuit", queue, "--clear"], env);
    expect(cleared.stdout.split("\n")[0]).toBe(
      `queue ${queue}: no circuit breaker settings of its own (its workflows may set one)`,
    );
  }, 60_000);
});
