import { randomUUID } from "node:crypto";
import { freePort } from "@weft/daemon";
import { createWeftClient, EventType, type ReconnectInfo, RunStatus, workflow } from "@weft/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, waitFor } from "./support/index.js";
import { pollTask, value, weftClients } from "./support/weft.js";

let redis: RedisServer;

beforeAll(async () => {
  redis = await startTestRedis();
});

afterAll(async () => {
  await redis?.close();
});

describe("watch across a daemon restart", () => {
  it.each(["SIGKILL", "SIGTERM"] as const)(
    "delivers every event exactly once when weftd dies (%s) mid-run and comes back",
    async (signal) => {
      const port = await freePort();
      const prefix = `test-${randomUUID()}`;
      const start = () =>
        spawnWeftd({
          redisUrl: redis.url,
          prefix,
          args: ["--addr", `127.0.0.1:${port}`, "--shutdown-grace", "1s"],
        });
      let weftd = await start();
      const client = createWeftClient({
        address: weftd.address,
        reconnect: { initialDelayMs: 50, maxDelayMs: 500, maxAttempts: 100 },
      });
      const queue = `restart-${randomUUID().slice(0, 8)}`;
      const name = queue;
      await client.submitWorkflow(
        workflow(name)
          .task("a", { queue })
          .task("b", { queue, dependsOn: ["a"] })
          .task("c", { queue, dependsOn: ["b"] }),
      );
      const { run } = await client.trigger(name, { n: 1 });

      const seen: { sequence: number; type: string; task: string }[] = [];
      const reconnects: ReconnectInfo[] = [];
      const watching = (async () => {
        for await (const e of client.watch(run.id, { onReconnect: (info) => reconnects.push(info) })) {
          seen.push({ sequence: Number(e.sequence), type: EventType[e.type], task: e.taskId });
        }
      })();

      let raw = weftClients(weftd.address);
      const a = await pollTask(raw, queue);
      await raw.workers.completeTask({ leaseId: a.leaseId, output: value(1) });
      await waitFor(() => seen.length >= 5, { message: "the watcher to see a completed and b queued" });

      if (signal === "SIGKILL") await weftd.kill();
      else await weftd.stop("SIGTERM");
      await waitFor(() => reconnects.length >= 1, { message: "the watch to notice the dropped stream" });
      weftd = await start();
      raw = weftClients(weftd.address);

      // Both tasks finish while the watcher may still be waiting to reconnect: it must catch up.
      for (const _ of ["b", "c"]) {
        const t = await pollTask(raw, queue);
        await raw.workers.completeTask({ leaseId: t.leaseId, output: value(t.taskId) });
      }
      await watching;
      client.close();
      await weftd.stop();

      expect(seen.map((e) => e.sequence)).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1));
      expect(seen.map((e) => `${e.type} ${e.task}`)).toEqual([
        "RUN_STARTED ",
        "TASK_QUEUED a",
        "TASK_STARTED a",
        "TASK_COMPLETED a",
        "TASK_QUEUED b",
        "TASK_STARTED b",
        "TASK_COMPLETED b",
        "TASK_QUEUED c",
        "TASK_STARTED c",
        "TASK_COMPLETED c",
        "RUN_FINISHED ",
      ]);
      expect(reconnects[0]?.afterSequence).toBe(5n);
    },
  );

  it("result() resolves across a restart too", async () => {
    const port = await freePort();
    const prefix = `test-${randomUUID()}`;
    const start = () => spawnWeftd({ redisUrl: redis.url, prefix, args: ["--addr", `127.0.0.1:${port}`] });
    let weftd = await start();
    const client = createWeftClient({
      address: weftd.address,
      reconnect: { initialDelayMs: 50, maxAttempts: 100 },
    });
    const queue = `result-${randomUUID().slice(0, 8)}`;
    await client.submitWorkflow(workflow(queue).task("only", { queue }));
    const { run } = await client.trigger(queue);
    const result = client.result(run.id);
    await weftd.kill();
    weftd = await start();
    const raw = weftClients(weftd.address);
    const t = await pollTask(raw, queue);
    await raw.workers.completeTask({ leaseId: t.leaseId, output: value({ ok: true }) });
    expect(await result).toEqual({ only: { ok: true } });
    expect((await client.getRun(run.id)).status).toBe(RunStatus.SUCCEEDED);
    client.close();
    await weftd.stop();
  });
});
