// The README's first SDK program: submit a workflow, start a run, wait for its output.
// With `pnpm weft dev` running: pnpm tsx examples/sdk/hello.ts
import { createWeftClient, workflow } from "@weft/sdk";

const client = createWeftClient({ address: process.env.WEFT_ADDRESS ?? "127.0.0.1:7233" });
const hello = workflow("hello-sdk") // its own name: the tour's `hello` stays as it is
  .task("greet", { handler: "echo", queue: "ts", input: { who: "world" } })
  .task("shout", { handler: "echo", queue: "ts", dependsOn: ["greet"] });
await client.submitWorkflow(hello);
const { run } = await client.trigger("hello-sdk", { n: 1 }, { idempotencyKey: "hello-sdk-1" });
console.log(`run ${run.id}:`, JSON.stringify(await client.result(run.id)));
client.close();
