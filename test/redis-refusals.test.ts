import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import {
  redisCommand,
  spawnWeftd,
  startTestCluster,
  startTestRedis,
  waitFor,
  within,
} from "./support/index.js";
import { expectNoRunRunning } from "./support/liveness.js";
import { pollTask, RunStatus, rpcError, task, weftClients } from "./support/weft.js";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const step of cleanups.splice(0).reverse()) await step().catch(() => {});
});

describe("Redis refusing commands", () => {
  it("answers UNAVAILABLE with weftd's words when Redis is out of memory, and logs Redis's in full", async () => {
    const redis = await startTestRedis();
    cleanups.push(() => redis.close());
    const weftd = await spawnWeftd({ redisUrl: redis.url });
    cleanups.push(() => weftd.stop());
    const c = weftClients(weftd.address);
    const queue = `oom-${randomUUID().slice(0, 8)}`;
    await redisCommand(redis.port, ["CONFIG", "SET", "maxmemory", "1"]);
    const err = await rpcError(
      c.workflows.submitWorkflow({ definition: { name: queue, tasks: [task("a", [], { queue })] } }),
    );
    expect([err.code, err.rawMessage]).toEqual([
      Code.Unavailable,
      "Redis is out of memory and refuses writes - try again later",
    ]);
    const logged = await weftd.waitForLog(
      (l) => l.msg === "redis could not serve a command: the call failed UNAVAILABLE",
      "the refusal logged",
    );
    expect(logged.trouble).toBe("memory");
    expect((logged.err as { message: string }).message).toMatch(/^OOM command not allowed/);
    await redisCommand(redis.port, ["CONFIG", "SET", "maxmemory", "0"]);
    await c.workflows.submitWorkflow({ definition: { name: queue, tasks: [task("a", [], { queue })] } });
  });

  it("answers UNAVAILABLE within seconds while a Cluster shard is down, and carries on once it is back", async () => {
    const cluster = await startTestCluster({ persistence: "aof" });
    cleanups.push(() => cluster.close());
    const weftd = await spawnWeftd({ redisUrl: cluster.url });
    cleanups.push(() => weftd.stop());
    const c = weftClients(weftd.address);
    const queue = `down-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({ definition: { name: queue, tasks: [task("a", [], { queue })] } });
    const { responses } = await c.workflows.batchTrigger({
      requests: Array.from({ length: 30 }, () => ({ workflow: queue })),
    });
    // A master and its replica gone: the Cluster refuses every slot (CLUSTERDOWN) once it notices.
    const [master] = await cluster.masters();
    if (master === undefined) throw new Error("no master");
    const replicas = await cluster.replicasOf(master);
    await Promise.all([master, ...replicas].map((n) => n.server.kill()));
    const started = Date.now();
    // Triggers sent before the Cluster noticed start runs of their own: their tasks are done below too.
    let runs = responses.length;
    const err = await waitFor(
      async () => {
        const e = await rpcError(c.workflows.trigger({ workflow: queue })).catch(() => {
          runs++;
          return undefined;
        });
        return e?.code === Code.Unavailable ? e : undefined;
      },
      { message: "a Trigger to fail UNAVAILABLE", timeoutMs: 20_000 },
    );
    expect([
      "Redis is unreachable - try again later",
      "Redis Cluster could not serve the command now (slots moving) - try again later",
    ]).toContain(err.rawMessage);
    // Each call answers within the client's retries, never waiting out the outage; a run in a slot
    // of a live master is read until the Cluster notices the loss (a Trigger fails as soon as its
    // run hashes to the dead shard), then refused too.
    const failed = await waitFor(
      async () => {
        const e = await within(
          rpcError(c.workflows.getRun({ runId: responses[0]?.run?.id ?? "" })).catch(() => undefined),
          5_000,
          "GetRun to answer",
        );
        return e?.code === Code.Unavailable ? e : undefined;
      },
      { message: "GetRun to fail UNAVAILABLE once the Cluster noticed", timeoutMs: 20_000 },
    );
    expect(failed.code).toBe(Code.Unavailable);
    expect(Date.now() - started).toBeLessThan(25_000);
    expect(weftd.logs.filter((l) => l.msg === "unexpected error")).toEqual([]);

    await Promise.all([master, ...replicas].map((n) => n.server.restart()));
    await cluster.waitHealthy(30_000);
    // Every run of the load finishes once the shard is back.
    for (let i = 0; i < runs; i++) {
      const t = await pollTask(c, queue, "w", 30n);
      await c.workers.completeTask({ leaseId: t.leaseId });
    }
    await expectNoRunRunning(c, queue, 30_000);
    const run = (await c.workflows.getRun({ runId: responses[0]?.run?.id ?? "" })).run;
    expect(run?.status).toBe(RunStatus.SUCCEEDED);
  }, 120_000);
});
