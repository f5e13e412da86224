import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, waitFor } from "./support/index.js";
import { EventType, RunStatus, task, weftClients } from "./support/weft.js";
import { spawnWorker } from "./support/worker-process.js";

let redis: RedisServer;

beforeAll(async () => {
  redis = await startTestRedis();
});

afterAll(async () => {
  await redis?.close();
});

const LIMIT = 10;
const TASKS = 410;

it(`never starts more than ${LIMIT} tasks of a queue in any one-second window, across 2 replicas and 3 workers`, async () => {
  const queue = `limited-${randomUUID().slice(0, 8)}`;
  const dir = mkdtempSync(join(tmpdir(), "weft-rate-"));
  writeFileSync(
    join(dir, "policy.yaml"),
    `queues:\n  ${queue}:\n    rateLimit: { max: ${LIMIT}, per: 1s }\n`,
  );
  const prefix = `rate-${randomUUID()}`;
  const args = ["--config", join(dir, "policy.yaml")];
  const replicas = await Promise.all([
    spawnWeftd({ redisUrl: redis.url, prefix, args }),
    spawnWeftd({ redisUrl: redis.url, prefix, args }),
  ]);
  const [one, two] = replicas as [(typeof replicas)[0], (typeof replicas)[0]];
  const workers = await Promise.all([
    spawnWorker({ address: one.address, queue, concurrency: 4 }),
    spawnWorker({ address: two.address, queue, concurrency: 4 }),
    spawnWorker({ address: one.address, queue, concurrency: 4 }),
  ]);
  try {
    const c = weftClients(one.address);
    await c.workflows.submitWorkflow({
      definition: {
        name: queue,
        tasks: Array.from({ length: TASKS }, (_, i) => task(`t${i}`, [], { queue })),
      },
    });
    const runId = (await c.workflows.trigger({ workflow: queue })).run?.id ?? "";
    const starts: number[] = [];
    for await (const res of weftClients(two.address).workflows.watchRun({ runId })) {
      const e = res.event;
      if (e?.type === EventType.TASK_STARTED && e.time)
        starts.push(Number(e.time.seconds) * 1000 + e.time.nanos / 1e6);
    }
    const run = await waitFor(async () => (await c.workflows.getRun({ runId })).run, { message: "the run" });
    expect(run.status).toBe(RunStatus.SUCCEEDED);
    expect(starts.length).toBe(TASKS);
    starts.sort((a, b) => a - b);
    // Any LIMIT + 1 consecutive starts span at least one second.
    let tightest = Number.POSITIVE_INFINITY;
    for (let i = LIMIT; i < starts.length; i++)
      tightest = Math.min(tightest, (starts[i] ?? 0) - (starts[i - LIMIT] ?? 0));
    expect(tightest).toBeGreaterThanOrEqual(1000);
    // And the run keeps close to the limit's pace: 410 tasks at 10/s take a little over 40 s. Each
    // window's first start waits for a slot to free, then a timer and a few round trips: 0.8 % more
    // on this machine under three busy loops, 4–12 % in CI runs sharing it with the Cluster tests.
    // A stall (a lost wake-up, a hold that does not end) costs seconds a window, many times this.
    const span = (starts[starts.length - 1] ?? 0) - (starts[0] ?? 0);
    expect(span).toBeGreaterThanOrEqual(((TASKS - LIMIT) / LIMIT) * 1000);
    expect(span).toBeLessThanOrEqual(((TASKS - LIMIT) / LIMIT) * 1000 * 1.25);
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await Promise.all(replicas.map((r) => r.stop()));
  }
}, 120_000);
