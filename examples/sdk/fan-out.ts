/**
 * Builds a fan-out / fan-in workflow with the typed builder — N shards between `split` and
 * `merge` — runs it on the TypeScript worker's queue "ts" and prints the result:
 *
 *   node --import tsx/esm examples/sdk/fan-out.ts 8
 */
import { createWeftClient, type WorkflowBuilder, workflow } from "@weft/sdk";

const shards = Number(process.argv[2] ?? 8);
const client = createWeftClient({ address: process.env.WEFT_ADDRESS ?? "127.0.0.1:7233" });

// With ids computed at run time the builder is a WorkflowBuilder<string>, checked at run time;
// with literal ids the compiler checks that `dependsOn` only names tasks added before.
let builder: WorkflowBuilder<string> = workflow(`fan-out-${shards}`, {
  description: `word count over ${shards} shards`,
}).task("split", {
  queue: "ts",
});
const counts: string[] = [];
for (let shard = 0; shard < shards; shard++) {
  const id = `count-${shard}`;
  builder = builder.task(id, {
    handler: "count-words",
    queue: "ts",
    dependsOn: ["split"],
    input: { shard, shards },
  });
  counts.push(id);
}
const fanOut = builder.task("merge", { queue: "ts", dependsOn: counts });

try {
  const { workflow: stored, layers } = await client.submitWorkflow(fanOut);
  console.log(
    `workflow ${stored.name} v${stored.version}: ${layers.map((l) => l.length).join(" → ")} tasks per layer`,
  );
  const { run } = await client.trigger(stored.name, {
    text: "the quick brown fox jumps over the lazy dog the end",
  });
  console.log(JSON.stringify(await client.result(run.id), null, 2));
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
} finally {
  client.close();
}
