import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createWeftTransport } from "@weft/sdk";
import { FailureService } from "@weft/sdk/gen/weft/v1/failure_service_pb.js";
import { RunStatus } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { inParallel, noopTask, type WorkflowClient, type WorkflowInit, workflowClient } from "../clients.js";
import { CpuMeter } from "../cpu.js";
import { InProcessWorker } from "../in-process-worker.js";
import { MiB, RssSampler } from "../rss.js";
import { type Figure, repetitions, rssFigure, type Scenario, sleep } from "../scenario.js";
import { latencyPercentiles } from "../stats.js";

/** Calls in flight when resuming (and triggering, for comparison). */
const CONCURRENCY = 32;
/** The schedule-to-start timeout that fails the runs' middle task while nobody polls its queue. */
const FAIL_AFTER_MS = 2000;
const WORKERS = 16;

/** Waits until no run of `workflow` is RUNNING; returns how many ended in each status. */
async function settled(client: WorkflowClient, workflow: string, n: number): Promise<Record<string, number>> {
  for (;;) {
    const counts: Record<string, number> = {};
    let total = 0;
    let pageToken = "";
    do {
      const page = await client.listRuns({ workflow, pageSize: 1000, pageToken });
      for (const r of page.runs) {
        const name = RunStatus[r.status] ?? "?";
        counts[name] = (counts[name] ?? 0) + 1;
        total++;
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    if (total >= n && (counts.RUNNING ?? 0) === 0) return counts;
    await sleep(100);
  }
}

/**
 * Scenario 9: resuming failed runs. Each repetition fails N runs of a → b → c (b times out waiting
 * for a worker), then resumes them all once b's queue has a worker (b and c run again, a does not),
 * and, for comparison, triggers N runs of the same tasks (b → c).
 */
export const resume: Scenario = {
  id: "resume",
  title: "9. Resume of failed runs",
  async run(ctx) {
    const { sizes } = ctx;
    const n = sizes.resumeRuns;
    const weftd = await ctx.startWeftd();
    const rss = new RssSampler(weftd.pid).start();
    const client = workflowClient(weftd.address);
    const failures = createClient(FailureService, createWeftTransport({ address: weftd.address }).transport);
    const first = new InProcessWorker(weftd.address, "rs-a", WORKERS);
    first.start();
    ctx.defer(() => first.close());

    const resumeS: number[] = [];
    const resumesPerS: number[] = [];
    const resumeP50: number[] = [];
    const resumeP99: number[] = [];
    const resumeCpu: number[] = [];
    const resumeDoneS: number[] = [];
    const triggerS: number[] = [];
    const triggersPerS: number[] = [];
    const triggerP50: number[] = [];
    const triggerCpu: number[] = [];
    const triggerDoneS: number[] = [];
    for (let rep = 1; rep <= sizes.reps; rep++) {
      const failing = `resume-${rep}`;
      const fresh = `fresh-${rep}`;
      const bQueue = `rs-b${rep}`;
      const definition: WorkflowInit = {
        name: failing,
        defaultRetry: { maxAttempts: 1 },
        tasks: [
          noopTask("a", "rs-a"),
          {
            id: "b",
            handler: "noop",
            queue: bQueue,
            dependsOn: ["a"],
            timeouts: { scheduleToStart: durationFromMs(FAIL_AFTER_MS) },
          },
          noopTask("c", "rs-a", ["b"]),
        ],
      };
      await client.submitWorkflow({ definition });
      await client.submitWorkflow({
        definition: { name: fresh, tasks: [noopTask("b", bQueue), noopTask("c", "rs-a", ["b"])] },
      });
      // N failed runs: a succeeded, b failed (nobody polled its queue), c skipped.
      for (let i = 0; i < n; i += 1000) {
        const count = Math.min(1000, n - i);
        await client.batchTrigger({ requests: Array.from({ length: count }, () => ({ workflow: failing })) });
      }
      const failed = await settled(client, failing, n);
      if (failed.FAILED !== n) throw new Error(`expected ${n} failed runs, got ${JSON.stringify(failed)}`);
      const runIds: string[] = [];
      let pageToken = "";
      do {
        const page = await client.listRuns({ workflow: failing, pageSize: 1000, pageToken });
        runIds.push(...page.runs.map((r) => r.id));
        pageToken = page.nextPageToken;
      } while (pageToken !== "");

      const second = new InProcessWorker(weftd.address, bQueue, WORKERS);
      second.start();
      let cpu = new CpuMeter({ weftd: weftd.pid }).start();
      const latencies: number[] = [];
      let t0 = performance.now();
      await inParallel(n, CONCURRENCY, async (i) => {
        const started = performance.now();
        const res = await failures.resumeRun({ runId: runIds[i] as string });
        latencies.push(performance.now() - started);
        if (!res.resumed) throw new Error(`run ${runIds[i]} was not resumed`);
      });
      const callsDone = performance.now();
      const resumed = await settled(client, failing, n);
      const allDone = performance.now();
      resumeCpu.push((cpu.stop().weftd ?? 0) / n);
      if (resumed.SUCCEEDED !== n) throw new Error(`resumed runs ended ${JSON.stringify(resumed)}`);
      const r = latencyPercentiles(latencies);
      resumeS.push((callsDone - t0) / 1000);
      resumesPerS.push(n / ((callsDone - t0) / 1000));
      resumeP50.push(r.p50);
      resumeP99.push(r.p99);
      resumeDoneS.push((allDone - t0) / 1000);

      // The same tasks, as new runs.
      cpu = new CpuMeter({ weftd: weftd.pid }).start();
      const triggerLatencies: number[] = [];
      t0 = performance.now();
      await inParallel(n, CONCURRENCY, async () => {
        const started = performance.now();
        await client.trigger({ workflow: fresh });
        triggerLatencies.push(performance.now() - started);
      });
      const triggered = performance.now();
      const done = await settled(client, fresh, n);
      const freshDone = performance.now();
      triggerCpu.push((cpu.stop().weftd ?? 0) / n);
      if (done.SUCCEEDED !== n) throw new Error(`triggered runs ended ${JSON.stringify(done)}`);
      triggerS.push((triggered - t0) / 1000);
      triggersPerS.push(n / ((triggered - t0) / 1000));
      triggerP50.push(latencyPercentiles(triggerLatencies).p50);
      triggerDoneS.push((freshDone - t0) / 1000);
      await second.close();
      ctx.log(
        `rep ${rep}: ${n} resumes in ${resumeS.at(-1)?.toFixed(2)} s (p50 ${r.p50.toFixed(1)} ms), all succeeded after ${resumeDoneS.at(-1)?.toFixed(2)} s; ` +
          `${n} triggers in ${triggerS.at(-1)?.toFixed(2)} s, all succeeded after ${triggerDoneS.at(-1)?.toFixed(2)} s`,
      );
    }
    const { peak } = rss.stop();
    const N = n.toLocaleString("en-US");
    const fig = (key: string, label: string, unit: string, samples: number[], digits = 2): Figure => ({
      key,
      label,
      unit,
      samples,
      digits,
    });
    return {
      setup: [
        `Each repetition: ${N} runs of a → b → c fail (b's queue has no worker; b's ${FAIL_AFTER_MS} ms schedule-to-start timeout fails it; c is skipped). Then a worker polls b's queue and the ${N} runs are resumed with ResumeRun, ${CONCURRENCY} calls in flight: b and c run again, a (succeeded) does not.`,
        `For comparison, ${N} new runs of b → c (the same two tasks) are started with Trigger, ${CONCURRENCY} calls in flight. Workers: @weft/worker in the bench process, ${WORKERS} slots per queue, no-op handlers. ${repetitions(sizes.reps)}.`,
      ],
      figures: [
        fig("resumes_per_s", `ResumeRun calls per second (${N} runs)`, "runs/s", resumesPerS, 0),
        fig("resume_p50_ms", "ResumeRun round trip p50", "ms", resumeP50),
        fig("resume_p99_ms", "ResumeRun round trip p99", "ms", resumeP99),
        fig("resume_all_succeeded_s", `first ResumeRun to the ${N} resumed runs SUCCEEDED`, "s", resumeDoneS),
        fig("resume_weftd_cpu_ms_per_run", "weftd CPU per resumed run (resume to success)", "ms", resumeCpu),
        fig(
          "triggers_per_s",
          `Trigger calls per second (${N} runs of the same tasks)`,
          "runs/s",
          triggersPerS,
          0,
        ),
        fig("trigger_p50_ms", "Trigger round trip p50", "ms", triggerP50),
        fig("trigger_all_succeeded_s", `first Trigger to the ${N} new runs SUCCEEDED`, "s", triggerDoneS),
        fig(
          "trigger_weftd_cpu_ms_per_run",
          "weftd CPU per triggered run (trigger to success)",
          "ms",
          triggerCpu,
        ),
        rssFigure("weftd peak RSS during the scenario", [peak / MiB]),
      ],
      tables: [],
      notes: [
        "A resume reads the run's records, plans, runs one Lua step, removes the jobs the run's first round left in BullMQ (a failed job keeps its deterministic id for a day) and enqueues what it queued: a few more round trips than a Trigger of the same tasks.",
      ],
    };
  },
};
