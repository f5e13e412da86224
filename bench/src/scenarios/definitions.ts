import { create, toBinary } from "@bufbuild/protobuf";
import { SubmitWorkflowRequestSchema } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { layeredWorkflow, workflowClient } from "../clients.js";
import { fmt } from "../report.js";
import { MiB, RssSampler, readRss } from "../rss.js";
import { type Figure, repetitions, rssFigure, type Scenario, sleep } from "../scenario.js";
import { percentile } from "../stats.js";
import type { Weftd } from "../weftd.js";

const WIDTH = 100;

/** Scenario 5: SubmitWorkflow of ever larger DAGs: time and weftd memory. */
export const definitions: Scenario = {
  id: "definitions",
  title: "5. Scale of definitions",
  async run(ctx) {
    const { sizes } = ctx;
    const figures: Figure[] = [];
    const rows: string[][] = [];
    const peaks: number[] = [];
    // The full run starts a fresh weftd per size, so that its memory shows what this size costs;
    // --quick shares one.
    let shared: Weftd | undefined;
    for (const n of sizes.definitionSizes) {
      if (shared === undefined || !ctx.quick) shared = await ctx.startWeftd();
      const weftd = shared;
      const client = workflowClient(weftd.address);
      // Warm the call path with a small definition.
      await client.submitWorkflow({ definition: layeredWorkflow(`warm-${n}`, "defs", 200) });
      await sleep(300);
      const idle = readRss(weftd.pid) ?? 0;
      const rss = new RssSampler(weftd.pid, 20).start();
      const submitMs: number[] = [];
      const validateMs: number[] = [];
      let bytes = 0;
      let encodeMs = 0;
      for (let rep = 1; rep <= sizes.reps; rep++) {
        const definition = layeredWorkflow(`dag-${n}-${rep}`, "defs", n, WIDTH);
        const e0 = performance.now();
        bytes = toBinary(
          SubmitWorkflowRequestSchema,
          create(SubmitWorkflowRequestSchema, { definition }),
        ).length;
        encodeMs = performance.now() - e0;
        let t0 = performance.now();
        await client.submitWorkflow({ definition, validateOnly: true });
        validateMs.push(performance.now() - t0);
        t0 = performance.now();
        const res = await client.submitWorkflow({ definition });
        submitMs.push(performance.now() - t0);
        if (res.created !== true) throw new Error(`workflow dag-${n}-${rep} was not created`);
      }
      await sleep(200);
      const { peak, last } = rss.stop();
      if (!ctx.quick) await weftd.stop();
      peaks.push(peak / MiB);
      const label = n.toLocaleString("en-US");
      figures.push({
        key: `submit_${n}_ms`,
        label: `SubmitWorkflow, ${label} tasks (validate + store)`,
        unit: "ms",
        samples: submitMs,
        digits: 0,
        ...(n === 100_000 ? { target: { op: "<", value: 2000, on: "median", text: "< 2 s" } as const } : {}),
      });
      figures.push({
        key: `validate_only_${n}_ms`,
        label: `SubmitWorkflow validate_only, ${label} tasks`,
        unit: "ms",
        samples: validateMs,
        digits: 0,
      });
      const median = percentile(submitMs, 50);
      rows.push([
        label,
        `${fmt(bytes / 1024, 0)} KiB`,
        `${fmt(encodeMs, 1)} ms`,
        `${fmt(percentile(validateMs, 50), 0)} ms`,
        `${fmt(median, 0)} ms`,
        `${fmt(median / (n / 1000), 2)} ms`,
        `${fmt(idle / MiB, 0)} MiB`,
        `${fmt(peak / MiB, 0)} MiB`,
        `${fmt((peak - idle) / MiB, 0)} MiB`,
        `${fmt(last / MiB, 0)} MiB`,
      ]);
      ctx.log(
        `${label} tasks: submit ${median.toFixed(0)} ms, validate_only ${percentile(validateMs, 50).toFixed(0)} ms, RSS ${(idle / MiB).toFixed(0)} → peak ${(peak / MiB).toFixed(0)} MiB`,
      );
    }
    figures.push(rssFigure("weftd peak RSS, largest definition", [Math.max(...peaks)]));
    return {
      setup: [
        `Layered DAGs: layers of ${WIDTH} tasks, every task after the first layer depends on two tasks of the layer before (≈ 2 edges per task); sizes ${sizes.definitionSizes.map((n) => n.toLocaleString("en-US")).join(" / ")}.`,
        `Per size a fresh weftd (--max-tasks-per-workflow 100000 --max-request-bytes 256MiB; --quick shares one); ${repetitions(sizes.reps)}, each a new workflow name: first with validate_only (validate and plan, nothing stored), then stored.`,
        "Times are client-side round trips of the Connect client (gRPC, loopback), so they include encoding the request; weftd RSS sampled every 20 ms (VmRSS).",
      ],
      figures,
      tables: [
        {
          title: "Growth with size (medians)",
          header: [
            "tasks",
            "request",
            "client encode",
            "validate_only",
            "submit",
            "submit per 1,000 tasks",
            "weftd RSS before",
            "peak",
            "peak − before",
            "after",
          ],
          rows,
        },
      ],
      notes: [
        `weftd keeps the compiled DAG of recently used versions in memory (an LRU of 256 versions), so "after" includes the ${sizes.reps} stored version(s) of that size.`,
      ],
    };
  },
};
