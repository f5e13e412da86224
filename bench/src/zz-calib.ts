import { fork } from "node:child_process";
import { createServer } from "node:http2";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { workflowClient } from "./clients.js";
import { cpuMs } from "./cpu.js";
import { latencyPercentiles } from "./stats.js";

if (process.argv[2] === "server") {
  const handler = connectNodeAdapter({
    routes: (router) => router.service(WorkflowService, { getWorkflow: () => ({}) } as never),
  });
  const server = createServer(handler).listen(0, "127.0.0.1", () => {
    process.send?.((server.address() as { port: number }).port);
  });
} else {
  const child = fork(new URL(import.meta.url).pathname, ["server"], { execArgv: process.execArgv });
  const port = await new Promise<number>((r) => child.once("message", (m) => r(m as number)));
  const client = workflowClient(`127.0.0.1:${port}`);
  for (let i = 0; i < 200; i++) await client.getWorkflow({ name: "x" });
  const n = 1000;
  const c0 = cpuMs(child.pid as number) ?? 0;
  const s0 = cpuMs(process.pid) ?? 0;
  const xs: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await client.getWorkflow({ name: "x" });
    xs.push(performance.now() - t);
  }
  const p = latencyPercentiles(xs);
  console.log(
    "bare connect unary: p50",
    p.p50.toFixed(2),
    "p99",
    p.p99.toFixed(2),
    "wall/call",
    ((performance.now() - t0) / n).toFixed(2),
    "server cpu/call",
    (((cpuMs(child.pid as number) ?? 0) - c0) / n).toFixed(3),
    "client cpu/call",
    (((cpuMs(process.pid) ?? 0) - s0) / n).toFixed(3),
  );
  child.kill();
  process.exit(0);
}
