import { startRedisServer } from "@weft/daemon";
import { Redis } from "ioredis";
import { parallelWorkflow, workflowClient } from "./clients.js";
import { latencyPercentiles } from "./stats.js";
import { startWeftd } from "./weftd.js";

const redis = await startRedisServer({ persistence: "none" });
const weftd = await startWeftd({ redisUrl: redis.url, prefix: "bench" });
const client = workflowClient(weftd.address);
await client.submitWorkflow({ definition: parallelWorkflow("one", "nobody", 1) });
const r = new Redis(redis.url);
async function time(label: string, n: number, fn: () => Promise<unknown>) {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    xs.push(performance.now() - t);
  }
  const p = latencyPercentiles(xs.slice(n / 4));
  console.log(label.padEnd(30), "p50", p.p50.toFixed(3), "p99", p.p99.toFixed(3));
}
await time("redis ping", 400, () => r.ping());
await time("getWorkflow", 400, () => client.getWorkflow({ name: "one", version: 1 }));
await time("listWorkflows", 400, () => client.listWorkflows({ pageSize: 1 }));
await time("trigger (queue w/o worker)", 400, () => client.trigger({ workflow: "one" }));
const { run } = await client.trigger({ workflow: "one" });
await time("getRun", 400, () => client.getRun({ runId: run?.id ?? "" }));
r.disconnect();
await weftd.stop();
await redis.close();
process.exit(0);
