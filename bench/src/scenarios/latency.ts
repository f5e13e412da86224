import { measureFloor } from "../calibration.js";
import { chainWorkflow, parallelWorkflow, value, workflowClient } from "../clients.js";
import { type HandlerCall, InProcessWorker } from "../in-process-worker.js";
import { MiB, RssSampler } from "../rss.js";
import { type Figure, repetitions, rssFigure, type Scenario, sleep } from "../scenario.js";
import { latencyPercentiles } from "../stats.js";

const CONCURRENCY = 4;
/** Chains run before the measured repetitions (then as many single tasks as one repetition has). */
const WARM_UP_CHAINS = 3;

/** Scenario 2: per-step overhead of a chain, and schedule-to-start of a task whose worker already polls. */
export const latency: Scenario = {
  id: "latency",
  title: "2. Latency",
  async run(ctx) {
    const { sizes } = ctx;
    const weftd = await ctx.startWeftd();
    const rss = new RssSampler(weftd.pid).start();
    const client = workflowClient(weftd.address);
    const worker = new InProcessWorker(weftd.address, "lat", CONCURRENCY);
    worker.start();
    ctx.defer(() => worker.close());
    const L = sizes.chainLength;
    await client.submitWorkflow({ definition: chainWorkflow("chain", "lat", L) });
    await client.submitWorkflow({ definition: parallelWorkflow("single", "lat", 1) });
    await sleep(300);

    /** Runs the chain once; returns the handler calls in order and the trigger time. */
    const runChain = async (): Promise<{ calls: HandlerCall[]; t0: number; tEnd: number }> => {
      const calls: HandlerCall[] = [];
      let finish: () => void = () => {};
      const finished = new Promise<void>((resolve) => {
        finish = resolve;
      });
      let completions = 0;
      worker.onEnd = (call) => calls.push(call);
      worker.onCompleted = () => {
        if (++completions === L) finish();
      };
      const t0 = performance.now();
      await client.trigger({ workflow: "chain" });
      await finished;
      return { calls, t0, tEnd: performance.now() };
    };

    /** Triggers the 1-task workflow `n` times, one after the other; schedule-to-start and Trigger RTT. */
    const scheduleToStart = async (n: number): Promise<{ sts: number[]; rtt: number[] }> => {
      const sts: number[] = [];
      const rtt: number[] = [];
      for (let k = 0; k < n; k++) {
        let started: (t: number) => void = () => {};
        const startedAt = new Promise<number>((resolve) => {
          started = resolve;
        });
        let completed: () => void = () => {};
        const done = new Promise<void>((resolve) => {
          completed = resolve;
        });
        worker.onStart = (call) => {
          if (call.runInput === k) started(call.start);
        };
        worker.onEnd = () => {};
        worker.onCompleted = () => completed();
        const t0 = performance.now();
        await client.trigger({ workflow: "single", input: value(k) });
        rtt.push(performance.now() - t0);
        sts.push((await startedAt) - t0);
        await done;
        // Let the worker's loop put its poll back, so that every sample starts with polls waiting.
        await sleep(5);
      }
      worker.onStart = () => {};
      return { sts, rtt };
    };

    const floor = await measureFloor(ctx.redisUrl, 1, 300);
    ctx.log(
      `floor: bare Connect unary round trip p50 ${floor.connect.p50Ms.toFixed(2)} ms, bare node:http2 gRPC ${floor.h2.p50Ms.toFixed(2)} ms, Redis PING p50 ${floor.redisPingP50Ms.toFixed(2)} ms`,
    );
    // Steady state, as in a long-running daemon: with one chain and 20 single tasks of warm-up, each
    // repetition was faster than the one before (p50 2.6 → 2.2 → 1.9 ms) while V8 still optimised the
    // hot paths of weftd and the worker.
    ctx.log(`warm-up: ${WARM_UP_CHAINS} chains, ${sizes.scheduleSamples} single tasks`);
    for (let i = 0; i < WARM_UP_CHAINS; i++) await runChain();
    await scheduleToStart(sizes.scheduleSamples);

    const stepP50: number[] = [];
    const stepP99: number[] = [];
    const stepMean: number[] = [];
    const stsP50: number[] = [];
    const stsP99: number[] = [];
    const rttP50: number[] = [];
    for (let rep = 1; rep <= sizes.reps; rep++) {
      const { calls, t0, tEnd } = await runChain();
      const gaps: number[] = [];
      for (let i = 1; i < calls.length; i++)
        gaps.push((calls[i] as HandlerCall).start - (calls[i - 1] as HandlerCall).end);
      const g = latencyPercentiles(gaps);
      stepP50.push(g.p50);
      stepP99.push(g.p99);
      stepMean.push((tEnd - t0) / L);
      const { sts, rtt } = await scheduleToStart(sizes.scheduleSamples);
      const s = latencyPercentiles(sts);
      stsP50.push(s.p50);
      stsP99.push(s.p99);
      rttP50.push(latencyPercentiles(rtt).p50);
      ctx.log(
        `rep ${rep}: chain step p50 ${g.p50.toFixed(2)} ms p99 ${g.p99.toFixed(2)} ms (whole chain ${(tEnd - t0).toFixed(0)} ms); ` +
          `schedule-to-start p50 ${s.p50.toFixed(2)} ms p99 ${s.p99.toFixed(2)} ms`,
      );
    }
    const { peak } = rss.stop();
    const ms = (key: string, label: string, samples: number[], target?: Figure["target"]): Figure => ({
      key,
      label,
      unit: "ms",
      samples,
      digits: 2,
      ...(target === undefined ? {} : { target }),
    });
    return {
      setup: [
        `A workflow of ${L} sequential no-op tasks; per-step overhead = handler start of task i+1 − handler end of task i (${L - 1} gaps per repetition), both stamped with performance.now() in the bench process.`,
        `Schedule-to-start: ${sizes.scheduleSamples} runs of a 1-task workflow, one after the other; time from just before the Trigger call to the handler's start, same clock. The worker already polls (${CONCURRENCY} poll loops; each sample waits until the previous task completed and 5 ms more).`,
        "Floor: the same round trips without Weft: a bare Connect server in its own process answering an empty GetWorkflow, the same call to a bare gRPC server on node:http2 alone (no server framework), and a Redis PING. A chain step is at least one CompleteTask and one PollTask answer plus the Redis steps between them; schedule-to-start is at least one Trigger and one PollTask answer.",
        `Worker: @weft/worker \`Worker\` in the bench process (concurrency ${CONCURRENCY}), gRPC over loopback to one weftd. ${repetitions(sizes.reps)} after a warm-up of ${WARM_UP_CHAINS} chains and ${sizes.scheduleSamples} single tasks (a fresh weftd is slower until V8 has optimised its hot paths).`,
      ],
      figures: [
        ms("chain_step_p50_ms", "chain per-step overhead p50", stepP50, {
          op: "<=",
          value: 3,
          on: "median",
          text: "p50 ≤ 3 ms",
        }),
        ms("chain_step_p99_ms", "chain per-step overhead p99", stepP99),
        ms("chain_step_mean_ms", "whole chain time / tasks (Trigger to last completion)", stepMean),
        ms("schedule_to_start_p50_ms", "schedule-to-start p50", stsP50, {
          op: "<=",
          value: 2,
          on: "median",
          text: "p50 ≤ 2 ms",
        }),
        ms("schedule_to_start_p99_ms", "schedule-to-start p99", stsP99),
        ms("trigger_rtt_p50_ms", "Trigger call round trip p50 (for comparison)", rttP50),
        ms("floor_rpc_p50_ms", "floor: bare Connect unary round trip p50 (no Weft, no Redis)", [
          floor.connect.p50Ms,
        ]),
        ms(
          "floor_h2_rpc_p50_ms",
          "floor: bare node:http2 gRPC unary round trip p50 (Connect client; no Connect on the server)",
          [floor.h2.p50Ms],
        ),
        ms("floor_redis_ping_p50_ms", "floor: Redis PING round trip p50 (ioredis)", [floor.redisPingP50Ms]),
        rssFigure("weftd peak RSS during the scenario", [peak / MiB]),
      ],
      tables: [],
      notes: [],
    };
  },
};
