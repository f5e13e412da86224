/**
 * Submits examples/etl.yaml, triggers a run (once per day: the date is the idempotency key),
 * prints its events as they happen and then its output:
 *
 *   node --import tsx/esm examples/sdk/etl.ts 2024-05-01
 */
import { fileURLToPath } from "node:url";
import { createWeftClient, EventType, loadWorkflowFile, RunFailedError } from "@weft/sdk";

const date = process.argv[2] ?? "2024-05-01";
const client = createWeftClient({ address: process.env.WEFT_ADDRESS ?? "127.0.0.1:7233" });
try {
  const spec = await loadWorkflowFile(fileURLToPath(new URL("../etl.yaml", import.meta.url)));
  const { workflow, layers } = await client.submitWorkflow(spec);
  console.log(
    `workflow ${workflow.name} v${workflow.version}: ${layers.map((l) => l.join(", ")).join(" → ")}`,
  );

  const { run, created } = await client.trigger(
    "etl",
    { date, orders: 12 },
    { idempotencyKey: `etl-${date}` },
  );
  console.log(`run ${run.id} ${created ? "started" : "already existed"}`);
  for await (const event of client.watch(run.id)) {
    console.log(`  #${event.sequence} ${EventType[event.type]} ${event.taskId}`);
  }
  console.log(JSON.stringify(await client.result(run.id), null, 2));
} catch (err) {
  if (err instanceof RunFailedError) {
    for (const t of err.failedTasks) console.error(`${t.taskId}: ${t.errorType}: ${t.errorMessage}`);
  }
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
} finally {
  client.close();
}
