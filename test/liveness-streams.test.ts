import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, within } from "./support/index.js";
import { expectNoRunRunning, runOutcome } from "./support/liveness.js";
import { type ProtocolWorker, spawnProtocolWorker } from "./support/protocol-worker.js";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.js";
import { task, value, weftClients } from "./support/weft.js";

let redis: RedisServer;
let proxy: TcpProxy;
const workers: ProtocolWorker[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  proxy = await startTcpProxy({ host: "127.0.0.1", port: redis.port });
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await proxy?.close();
  await redis?.close();
});

describe("a Work stream whose poll fails", () => {
  it("ends with the poll's error when it cannot go on, instead of staying open and silent", async () => {
    const weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--max-open-queues", "1"] });
    try {
      const c = weftClients(weftd.address);
      const open = (queue: string) =>
        (async () => {
          for await (const _ of c.workers.work(
            (async function* () {
              yield { queue, workerId: `w-${queue}`, credits: 4 };
              // The worker keeps its side open and waits, as a worker with nothing to report does.
              await new Promise(() => {});
            })(),
          ));
        })();
      const first = open("open-one");
      first.catch(() => {});
      const refused = await within(
        open("open-two").then(
          () => undefined,
          (err: unknown) => ConnectError.from(err),
        ),
        10_000,
        "the Work stream of a queue over --max-open-queues to end",
      );
      expect(refused?.code).toBe(Code.ResourceExhausted);
      expect(refused?.rawMessage).toMatch(/^queue: "open-two" would be one task queue more/);
    } finally {
      await weftd.stop();
    }
  });

  it("keeps serving once Redis answers weftd again, when it failed while a task was being handed over", async () => {
    // weftd reaches Redis through the proxy; its own client (named weftd:<prefix>) is cut while
    // BullMQ's connections go on, so that jobs are fetched but the step that starts them fails.
    const weftd = await spawnWeftd({ redisUrl: `redis://127.0.0.1:${proxy.port}` });
    try {
      const c = weftClients(weftd.address);
      const queue = `handover-${randomUUID().slice(0, 8)}`;
      await c.workflows.submitWorkflow({
        definition: { name: queue, tasks: [task("a", [], { queue }), task("b", ["a"], { queue })] },
      });
      for (let i = 0; i < 20; i++) await c.workflows.trigger({ workflow: queue, input: value({ i }) });
      proxy.fault("reset", /setname weftd:/i);
      const worker = await spawnProtocolWorker({ address: weftd.address, queue, mode: "stream", credits: 4 });
      workers.push(worker);
      await weftd.waitForLog((l) => l.msg.includes("redis unreachable"), "weftd to see its Redis client cut");
      // Long enough for the stream to fetch jobs and fail to start them.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      proxy.heal();
      await expectNoRunRunning(c, queue, 30_000);
      expect((await runOutcome(c, queue)).byStatus).toEqual({ SUCCEEDED: 20 });
    } finally {
      proxy.heal();
      await weftd.stop();
    }
  });
});
