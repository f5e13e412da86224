import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { EventType } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { WorkerChild } from "../children.js";
import { fanWorkflow, type WorkflowClient, workflowClient } from "../clients.js";
import { CpuMeter } from "../cpu.js";
import { MiB, RssSampler } from "../rss.js";
import { planWithin, repetitions, rssFigure, type Scenario } from "../scenario.js";

/** Event times of one fan-out/fan-in run that mark its phases (weftd's clock, ms). */
interface Phases {
  rootCompleted: number;
  firstMiddleStarted: number;
  lastMiddleCompleted: number;
  sinkStarted: number;
  finished: number;
}

/** Watches a run to its end and picks the phase times out of its events. */
async function watchPhases(client: WorkflowClient, runId: string): Promise<Phases> {
  const p: Phases = {
    rootCompleted: 0,
    firstMiddleStarted: 0,
    lastMiddleCompleted: 0,
    sinkStarted: 0,
    finished: 0,
  };
  for await (const { event } of client.watchRun({ runId })) {
    if (event === undefined) continue;
    const t = timestampMs(event.time as Timestamp);
    const middle = event.taskId.startsWith("m");
    if (event.type === EventType.TASK_COMPLETED && event.taskId === "root") p.rootCompleted = t;
    else if (event.type === EventType.TASK_STARTED && middle && p.firstMiddleStarted === 0)
      p.firstMiddleStarted = t;
    else if (event.type === EventType.TASK_COMPLETED && middle)
      p.lastMiddleCompleted = Math.max(p.lastMiddleCompleted, t);
    else if (event.type === EventType.TASK_STARTED && event.taskId === "sink") p.sinkStarted = t;
    else if (event.type === EventType.RUN_FINISHED) p.finished = t;
  }
  return p;
}

/** Scenario 3: one run of 1 → N → 1. */
export const fanout: Scenario = {
  id: "fanout",
  title: "3. Fan-out/fan-in",
  async run(ctx) {
    const { sizes } = ctx;
    const width = sizes.fanWidth;
    const weftd = await ctx.startWeftd();
    const rss = new RssSampler(weftd.pid).start();
    const client = workflowClient(weftd.address);
    const worker = await WorkerChild.weft({
      addresses: [weftd.address],
      queue: "fan",
      concurrency: sizes.workerConcurrency,
      sleepMs: 0,
      deferStart: false,
    });
    ctx.defer(() => worker.stop());
    await client.submitWorkflow({ definition: fanWorkflow("fan", "fan", width) });
    await client.submitWorkflow({ definition: fanWorkflow("fan-warm", "fan", Math.min(width, 500)) });
    const total = width + 2;
    const Wd = width.toLocaleString("en-US");

    const runOnce = async (workflow: string, tasks: number) => {
      const { done } = await worker.expect(tasks, 600_000);
      const cpu = new CpuMeter({ weftd: weftd.pid }).start();
      const t0 = Date.now();
      const { run } = await client.trigger({ workflow });
      const phases = await watchPhases(client, run?.id ?? "");
      const { last } = await done;
      return { t0, last, phases, weftdCpu: cpu.stop().weftd ?? 0 };
    };
    ctx.log("warm-up: 1 → 500 → 1");
    const warmTasks = Math.min(width, 500) + 2;
    const warm = await runOnce("fan-warm", warmTasks);
    const plan = planWithin(
      sizes.budgetS.fanout,
      { reps: sizes.reps, tasks: total },
      (total / warmTasks) * ((warm.last - warm.t0) / 1000),
      { mayShrinkTasks: false },
    );
    if (plan.note !== undefined) ctx.log(plan.note);

    const totalS: number[] = [];
    const tps: number[] = [];
    const fanOutMs: number[] = [];
    const fanInMs: number[] = [];
    const cpuPerTask: number[] = [];
    for (let rep = 1; rep <= plan.reps; rep++) {
      const { t0, last, phases, weftdCpu } = await runOnce("fan", total);
      const elapsed = last - t0;
      totalS.push(elapsed / 1000);
      tps.push((total / elapsed) * 1000);
      fanOutMs.push(phases.firstMiddleStarted - phases.rootCompleted);
      fanInMs.push(phases.sinkStarted - phases.lastMiddleCompleted);
      cpuPerTask.push(weftdCpu / total);
      ctx.log(
        `rep ${rep}: ${(elapsed / 1000).toFixed(2)} s, fan-out ${fanOutMs.at(-1)} ms, fan-in ${fanInMs.at(-1)} ms`,
      );
    }
    const { peak } = rss.stop();
    return {
      setup: [
        `One run of a workflow root → ${Wd} parallel tasks → sink (the sink depends on all ${Wd}); ${total.toLocaleString("en-US")} no-op tasks, ${repetitions(plan.reps)} after a 1 → 500 → 1 warm-up.`,
        `Workers: @weft/worker in a separate process, concurrency ${sizes.workerConcurrency}. Total time: Trigger to the sink's completion acknowledged; phases from the run's event times (WatchRun).`,
      ],
      figures: [
        { key: "total_s", label: `1 → ${Wd} → 1, Trigger to last completion`, unit: "s", samples: totalS },
        { key: "tasks_per_s", label: "tasks per second", unit: "tasks/s", samples: tps },
        {
          key: "fan_out_ms",
          label: `fan-out: root completed → first of the ${Wd} started`,
          unit: "ms",
          samples: fanOutMs,
        },
        {
          key: "fan_in_ms",
          label: `fan-in: last of the ${Wd} completed → sink started`,
          unit: "ms",
          samples: fanInMs,
        },
        { key: "weftd_cpu_ms_per_task", label: "weftd CPU per task", unit: "ms", samples: cpuPerTask },
        rssFigure("weftd peak RSS during the scenario", [peak / MiB]),
      ],
      tables: [],
      notes: plan.note === undefined ? [] : [plan.note],
    };
  },
};
