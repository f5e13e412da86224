import { fork } from "node:child_process";
import { once } from "node:events";
import { Redis } from "ioredis";
import { inParallel, workflowClient } from "./clients.js";
import { cpuMs } from "./cpu.js";
import { BENCH_DIR, REPO_ROOT, TSX_LOADER } from "./paths.js";
import { latencyPercentiles } from "./stats.js";

/** What one unary call to one kind of bare server costs on this machine, from a Connect client. */
export interface CallFloor {
  /** Sequential calls: round trip p50, ms. */
  p50Ms: number;
  /** Calls per second with `concurrency` in flight. */
  perSecond: number;
  /** Server CPU per call at that concurrency, ms. */
  serverCpuMs: number;
}

/** What one unary call and one Redis round trip cost on this machine, without Weft. */
export interface Floor {
  /** A bare Connect server: what Weft's server framework costs per call. */
  connect: CallFloor;
  /** A bare gRPC server on node:http2 alone: what HTTP/2 and protobuf cost per call. */
  h2: CallFloor;
  /** ioredis PING round trip p50 from the bench, ms. */
  redisPingP50Ms: number;
}

/** Calls the bare server of `script` (a child in bench/src/child) sequentially, then `concurrency` at a time. */
async function measureCalls(script: string, concurrency: number, calls: number): Promise<CallFloor> {
  const child = fork(`${BENCH_DIR}src/child/${script}.ts`, [], {
    cwd: REPO_ROOT,
    execArgv: ["--import", TSX_LOADER],
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
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
    // The calls in flight take other paths than sequential ones: warm those up too (steady state).
    await inParallel(calls, concurrency, async () => {
      await call();
    });
    const cpu0 = cpuMs(child.pid as number) ?? 0;
    const t0 = performance.now();
    await inParallel(calls, concurrency, async () => {
      await call();
    });
    const elapsed = performance.now() - t0;
    const serverCpu = (cpuMs(child.pid as number) ?? 0) - cpu0;
    return {
      p50Ms: latencyPercentiles(seq).p50,
      perSecond: (calls / elapsed) * 1000,
      serverCpuMs: serverCpu / calls,
    };
  } finally {
    child.kill();
  }
}

/**
 * Measures the floor under Weft's figures: a bare Connect server and a bare node:http2 gRPC server,
 * each in its own process (no Weft, no Redis), called sequentially and with `concurrency` calls in
 * flight, and a Redis PING.
 */
export async function measureFloor(redisUrl: string, concurrency: number, calls = 2000): Promise<Floor> {
  const connect = await measureCalls("bare-server", concurrency, calls);
  const h2 = await measureCalls("bare-h2-server", concurrency, calls);
  const redis = new Redis(redisUrl);
  try {
    const pings: number[] = [];
    for (let i = 0; i < 300; i++) {
      const t = performance.now();
      await redis.ping();
      pings.push(performance.now() - t);
    }
    return { connect, h2, redisPingP50Ms: latencyPercentiles(pings.slice(50)).p50 };
  } finally {
    redis.disconnect();
  }
}
