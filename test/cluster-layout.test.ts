import { randomUUID } from "node:crypto";
import type { Cluster } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLUSTER_SHARD_TAGS, jobIdOf, Keys } from "../daemon/src/engine/shared/index.js";
import { keySlot } from "../daemon/src/redis/slots.js";
import {
  redisCommand,
  spawnWeftd,
  startTestCluster,
  type TestRedisCluster,
  type WeftdProcess,
  waitFor,
} from "./support/index.js";
import { expectNoRunRunning } from "./support/liveness.js";
import { collectEvents, EventType, pollTask, RunStatus, task, weftClients } from "./support/weft.js";

let cluster: TestRedisCluster;
let weftd: WeftdProcess;
let keys: Keys;
let client: Cluster;

beforeAll(async () => {
  cluster = await startTestCluster();
  weftd = await spawnWeftd({ redisUrl: cluster.url, args: ["--reconcile-after", "1s"] });
  keys = new Keys(weftd.prefix, true);
  client = new (await import("ioredis")).Cluster([{ host: "127.0.0.1", port: cluster.nodes[0]?.port ?? 0 }]);
});

afterAll(async () => {
  client?.disconnect();
  await weftd?.stop();
  await cluster?.close();
});

/** Keys matching `pattern` on each master, by port. */
async function keysByMaster(pattern: string): Promise<Map<number, string[]>> {
  const found = new Map<number, string[]>();
  for (const master of await cluster.masters())
    found.set(master.port, (await redisCommand(master.port, ["KEYS", pattern])) as string[]);
  return found;
}

describe("the key layout on a Redis Cluster", () => {
  it("spreads runs, their index entries, their marks and their timers over every master", async () => {
    const c = weftClients(weftd.address);
    const queue = `spread-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({
      definition: { name: queue, tasks: [task("a", [], { queue })], runTimeout: { seconds: 600n } },
    });
    const { responses } = await c.workflows.batchTrigger({
      requests: Array.from({ length: 60 }, () => ({ workflow: queue })),
    });
    const runIds = responses.map((r) => r.run?.id ?? "");

    // Each run's three keys sit on the master of its own slot; the runs cover every master.
    const runKeys = await keysByMaster(`${weftd.prefix}:run:*`);
    for (const [port, found] of runKeys) {
      expect(found.length, `master ${port} holds runs`).toBeGreaterThan(0);
      for (const key of found) {
        const id = /\{([^}]+)\}/.exec(key)?.[1] ?? "";
        expect((await cluster.masterOf(keySlot(`{${id}}`))).port).toBe(port);
      }
    }
    // The sets every run enters are sharded: none of them is one key, every shard is on its tag's slot.
    expect(await client.exists(`${weftd.prefix}:runs`)).toBe(0);
    expect(await client.exists(`${weftd.prefix}:dirty`)).toBe(0);
    const shards = new Set<string>();
    for (const id of runIds) {
      expect(await client.zscore(keys.runIndexOf(id), id)).not.toBeNull();
      expect(await client.zscore(keys.runIndexOf(id, queue), id)).not.toBeNull();
      expect(await client.zscore(keys.dirtyOf(id), id)).not.toBeNull();
      expect(await client.exists(`${keys.timerPrefix(keys.shardOf(id))}:timers:run-timeout.${id}`)).toBe(1);
      shards.add(keys.runIndexOf(id));
    }
    expect(shards.size).toBeGreaterThan(8);
    const shardMasters = new Set<number>();
    for (const shard of shards) shardMasters.add((await cluster.masterOf(keySlot(shard))).port);
    expect(shardMasters.size).toBe(3);
    await c.workflows.cancel({ runId: runIds[0] ?? "" });
    for (const id of runIds.slice(1)) await c.workflows.cancel({ runId: id });
    await expectNoRunRunning(c, queue, 10_000);
  });

  it("gives each shard tag the slot in the middle of its sixteenth of the slots", () => {
    expect(CLUSTER_SHARD_TAGS.map((tag) => keySlot(tag))).toEqual(
      Array.from({ length: 16 }, (_, k) => 1024 * k + 512),
    );
  });
});

describe("ListRuns on a Redis Cluster", () => {
  it("pages through the runs of every shard newest first, each once, runs of one BatchTrigger included", async () => {
    const c = weftClients(weftd.address);
    const queue = `pages-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({ definition: { name: queue, tasks: [task("a", [], { queue })] } });
    const batch = await c.workflows.batchTrigger({
      requests: Array.from({ length: 250 }, () => ({ workflow: queue })),
    });
    const single: string[] = [];
    for (let i = 0; i < 20; i++) single.push((await c.workflows.trigger({ workflow: queue })).run?.id ?? "");
    // One run finished, to filter by status.
    const t = await pollTask(c, queue);
    await c.workers.completeTask({ leaseId: t.leaseId });

    const seen: { id: string; created: number }[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await c.workflows.listRuns({ workflow: queue, pageSize: 7, pageToken });
      expect(page.runs.length).toBeLessThanOrEqual(7);
      for (const run of page.runs)
        seen.push({
          id: run.id,
          created: Number(run.createTime?.seconds) * 1000 + (run.createTime?.nanos ?? 0) / 1e6,
        });
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "" && pages < 100);
    const all = [...batch.responses.map((r) => r.run?.id ?? ""), ...single];
    expect(seen.map((r) => r.id).sort()).toEqual([...all].sort());
    // Newest first; among runs of one time (the BatchTrigger's), by id, descending.
    const order = [...seen].sort((a, b) => b.created - a.created || (b.id < a.id ? -1 : b.id > a.id ? 1 : 0));
    expect(seen.map((r) => r.id)).toEqual(order.map((r) => r.id));

    const succeeded = await c.workflows.listRuns({
      workflow: queue,
      statuses: [RunStatus.SUCCEEDED],
      pageSize: 7,
    });
    expect(succeeded.runs.map((r) => r.id)).toEqual([t.runId]);
    for (const id of all) await c.workflows.cancel({ runId: id });
  });
});

describe("watch events on a Redis Cluster", () => {
  it("go by sharded pub/sub: the run's channel lives on its master only, and no node broadcasts it", async () => {
    const c = weftClients(weftd.address);
    const queue = `sharded-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({ definition: { name: queue, tasks: [task("a", [], { queue })] } });
    const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
    const events = collectEvents(c, runId);
    const channel = keys.run(runId).events;
    const owner = (await cluster.masterOf(keySlot(channel))).port;
    await waitFor(
      async () =>
        ((await redisCommand(owner, ["PUBSUB", "SHARDCHANNELS", channel])) as string[]).length === 1,
      { message: `the channel ${channel} to be subscribed on its master` },
    );
    // The schedules' wake channel is weftd's one other channel: a shard channel too, on its own master.
    const wake = keys.scheduleWake();
    const wakeOwner = (await cluster.masterOf(keySlot(wake))).port;
    for (const master of await cluster.masters()) {
      expect(await redisCommand(master.port, ["PUBSUB", "CHANNELS", `${weftd.prefix}*`])).toEqual([]);
      const shardChannels = (await redisCommand(master.port, [
        "PUBSUB",
        "SHARDCHANNELS",
        `${weftd.prefix}*`,
      ])) as string[];
      expect(shardChannels.filter((ch) => ch !== wake && ch !== channel)).toEqual([]);
      if (master.port !== owner) expect(shardChannels).not.toContain(channel);
      expect(shardChannels.includes(wake)).toBe(master.port === wakeOwner);
    }
    const t = await pollTask(c, queue);
    await c.workers.completeTask({ leaseId: t.leaseId });
    const got = await events;
    expect(got.map((e) => EventType[e.type])).toEqual([
      "RUN_STARTED",
      "TASK_QUEUED",
      "TASK_STARTED",
      "TASK_COMPLETED",
      "RUN_FINISHED",
    ]);
  });
});

describe("the reconciler on a Redis Cluster", () => {
  it("finds the runs a crash left without a job in every shard of the recently-touched set", async () => {
    const c = weftClients(weftd.address);
    const queue = `recon-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({ definition: { name: queue, tasks: [task("a", [], { queue })] } });
    const { responses } = await c.workflows.batchTrigger({
      requests: Array.from({ length: 40 }, () => ({ workflow: queue })),
    });
    const runIds = responses.map((r) => r.run?.id ?? "");
    // As if a replica died between each run's step and its job: the jobs are gone, the runs marked.
    const bull = `${keys.queuePrefix(queue)}:${queue}`;
    const jobExists = async (id: string) =>
      (await client.exists(`${bull}:${jobIdOf(id, "a")}`)) === 1 &&
      (await client.lpos(`${bull}:wait`, jobIdOf(id, "a"))) !== null;
    for (const id of runIds) {
      expect(await jobExists(id)).toBe(true);
      await client.lrem(`${bull}:wait`, 0, jobIdOf(id, "a"));
      await client.del(`${bull}:${jobIdOf(id, "a")}`);
    }
    const old = Date.now() - 60_000;
    for (const id of runIds) await client.zadd(keys.dirtyOf(id), old, id);
    expect(new Set(runIds.map((id) => keys.dirtyOf(id))).size).toBeGreaterThan(8);
    await waitFor(
      async () => {
        for (const id of runIds) if (!(await jobExists(id))) return false;
        return true;
      },
      { message: "the reconciler to add every lost job again", timeoutMs: 15_000 },
    );
    for (const _ of runIds) {
      const t = await pollTask(c, queue);
      await c.workers.completeTask({ leaseId: t.leaseId });
    }
    await expectNoRunRunning(c, queue, 10_000);
  });
});
