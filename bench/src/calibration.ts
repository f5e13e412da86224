import { fork } from "node:child_process";
import { once } from "node:events";
import { Redis } from "ioredis";
import { inParallel, workflowClient } from "./clients.js";
import { cpuMs } from "./cpu.js";
import { BENCH_DIR, REPO_ROOT, TSX_LOADER } from "./paths.js";
import { latencyPercentiles } from "./stats.js";

/** What one unary call and one Redis round trip cost on this machine, without Weft. */
export interface Floor {
  /** Sequential bare Connect unary calls: round trip p50, ms. */
  rpcP50Ms: number;
  /** Bare Connect unary calls per second with `concurrency` in flight. */
  rpcPerSecond: number;
  /** Server CPU per call at that concurrency, ms. */
  rpcServerCpuMs: number;
  /** ioredis PING round trip p50 from the bench, ms. */
  redisPingP50Ms: number;
}

/**
 * Measures the floor under Weft's figures: a bare Connect server in its own process (no Weft, no
 * Redis), called sequentially and with `concurrency` calls in flight, and a Redis PING.
 */
export async function measureFloor(redisUrl: string, concurrency: number, calls = 2000): Promise<Floor> {
  const child = fork(`${BENCH_DIR}src/child/bare-server.ts`, [], {
    cwd: REPO_ROOT,
    execArgv: ["--import", TSX_LOADER],
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const redis = new Redis(redisUrl);
  try {
    const [port] = (await once(child, "message")) as [number];
    const client = workflowClient(`127.0.0.1:${port}`);
    const call = () => client.getWorkflow({ name: "floor" });
    for (let i = 0; i < 200; i++) await call();
    const seq: number[] = [];
    for (let i = 0; i < 300; i++) {
      const t = performance.now();
      await call();
      seq.push(performance.now() - t);
    }
    const cpu0 = cpuMs(child.pid as number) ?? 0;
    const t0 = performance.now();
    await inParallel(calls, concurrency, async () => {
      await call();
    });
    const elapsed = performance.now() - t0;
    const serverCpu = (cpuMs(child.pid as number) ?? 0) - cpu0;
    const pings: number[] = [];
    for (let i = 0; i < 300; i++) {
      const t = performance.now();
      await redis.ping();
      pings.push(performance.now() - t);
    }
    return {
      rpcP50Ms: latencyPercentiles(seq).p50,
      rpcPerSecond: (calls / elapsed) * 1000,
      rpcServerCpuMs: serverCpu / calls,
      redisPingP50Ms: latencyPercentiles(pings.slice(50)).p50,
    };
  } finally {
    redis.disconnect();
    child.kill();
  }
}
