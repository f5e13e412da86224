import { appendFileSync } from "node:fs";
import { RunStatus, TaskStatus } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { waitFor } from "./wait-for.js";
import type { WeftClients } from "./weft.js";

/** How the runs of a load ended. */
export interface RunOutcome {
  /** Runs by final status name ("SUCCEEDED", …). */
  byStatus: Record<string, number>;
  /** For each run that did not succeed, its failed tasks' error types ("task: type"). */
  reasons: string[];
}

/**
 * The liveness check that ends every fault test: within `timeoutMs`, no run of `workflow` is left
 * RUNNING. Fails naming how many still run, and for a few of them which task is where.
 */
export async function expectNoRunRunning(c: WeftClients, workflow: string, timeoutMs: number): Promise<void> {
  let left = 0;
  try {
    await waitFor(
      async () => {
        const { runs } = await c.workflows.listRuns({
          workflow,
          statuses: [RunStatus.RUNNING],
          pageSize: 1000,
        });
        left = runs.length;
        return runs.length === 0;
      },
      { message: `every run of ${workflow} to reach a final state`, timeoutMs, intervalMs: 200 },
    );
  } catch (err) {
    const { runs } = await c.workflows.listRuns({ workflow, statuses: [RunStatus.RUNNING], pageSize: 5 });
    const samples: string[] = [];
    for (const r of runs) {
      const run = (await c.workflows.getRun({ runId: r.id })).run;
      const tasks = (run?.tasks ?? []).map((t) => `${t.taskId}=${TaskStatus[t.status]}#${t.attempt}`);
      samples.push(`${r.id}: ${tasks.join(" ")}`);
    }
    throw new Error(`${(err as Error).message}: ${left} runs still RUNNING, e.g.\n${samples.join("\n")}`);
  }
}

/** Counts the runs of `workflow` by status, and the reasons of those that did not succeed. */
export async function runOutcome(c: WeftClients, workflow: string): Promise<RunOutcome> {
  const byStatus: Record<string, number> = {};
  const reasons: string[] = [];
  let pageToken = "";
  do {
    const page = await c.workflows.listRuns({ workflow, pageSize: 1000, pageToken });
    for (const run of page.runs) {
      const name = RunStatus[run.status] ?? String(run.status);
      byStatus[name] = (byStatus[name] ?? 0) + 1;
      if (run.status !== RunStatus.SUCCEEDED) reasons.push(`${run.id}: ${run.error}`);
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return { byStatus, reasons };
}

/**
 * Records a figure a fault test measured (a timeout's lateness, a recovery time) as a JSON line in
 * the file named by WEFT_TEST_REPORT, when set: how the timing guarantees' figures are gathered.
 */
export function reportFigure(name: string, ms: number): void {
  const file = process.env.WEFT_TEST_REPORT;
  if (file === undefined || file === "") return;
  appendFileSync(file, `${JSON.stringify({ name, ms })}\n`);
}
