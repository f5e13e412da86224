import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type RedisServer,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
  waitFor,
  within,
} from "./support/index.js";
import { task, value, type WeftClients, weftClients } from "./support/weft.js";

/** Far more than Node's default of 10 listeners per event target. */
const CALLS = 50;

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url, env: { NODE_OPTIONS: "--trace-warnings" } });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

describe("many open calls", () => {
  it("open watch streams, Work streams and long polls, then shutdown, without a MaxListenersExceededWarning", async () => {
    const queue = `listeners-${randomUUID().slice(0, 8)}`;
    const idle = `${queue}-idle`;
    await c.workflows.submitWorkflow({ definition: { name: queue, tasks: [task("a", [], { queue })] } });
    const { run } = await c.workflows.trigger({ workflow: queue, input: value(1) });
    const runId = run?.id ?? "";
    const calls = new AbortController();
    // Every call of this test process listens to it (a warning here would be the test's own).
    setMaxListeners(0, calls.signal);
    const settled: Promise<unknown>[] = [];
    let streamsOpen = 0;
    for (let i = 0; i < CALLS; i++) {
      // WatchRun streams: they stay open while the run runs (its task waits for a worker).
      settled.push(
        (async () => {
          for await (const _ of c.workflows.watchRun({ runId }, { signal: calls.signal })) {
            streamsOpen++;
            break;
          }
        })().catch(() => {}),
      );
      // Long polls of a queue no task comes to.
      settled.push(
        c.workers
          .pollTask({ queue: idle, workerId: `p${i}`, wait: { seconds: 30n } }, { signal: calls.signal })
          .catch(() => {}),
      );
      // Work streams with credits on the same idle queue: each waits in a poll.
      settled.push(
        (async () => {
          const requests = (async function* () {
            yield { queue: idle, workerId: `w${i}`, credits: 1 };
            await new Promise((resolve) => calls.signal.addEventListener("abort", resolve));
          })();
          for await (const _ of c.workers.work(requests, { signal: calls.signal })) break;
        })().catch(() => {}),
      );
    }
    await waitFor(async () => streamsOpen >= CALLS || undefined, {
      message: `${CALLS} watch streams to send their first event`,
    });
    await waitFor(
      async () => {
        const text = await (await fetch(`${weftd.metricsUrl}/metrics`)).text();
        const streams = Number(/^weft_rpc_streams_in_flight (\d+)/m.exec(text)?.[1] ?? 0);
        const unary = Number(/^weft_rpc_unary_in_flight (\d+)/m.exec(text)?.[1] ?? 0);
        return streams >= 2 * CALLS && unary >= CALLS ? true : undefined;
      },
      { message: `${2 * CALLS} streams and ${CALLS} polls in flight on weftd` },
    );
    // Shutdown aborts every signal the calls listen to.
    const exit = await weftd.stop("SIGTERM", 20_000);
    calls.abort();
    await within(Promise.all(settled), 10_000, "every call to end");
    expect(exit.code).toBe(0);
    expect(weftd.output).not.toMatch(/MaxListenersExceededWarning/);
    expect(weftd.output).not.toMatch(/possible EventTarget memory leak/i);
  });
});
