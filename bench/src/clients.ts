import { fromJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createWeftTransport } from "@weft/sdk";
import type { TaskDefinitionSchema, WorkflowDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";

/** A Connect client of WorkflowService over gRPC (HTTP/2, one connection per client). */
export type WorkflowClient = Client<typeof WorkflowService>;

/**
 * A WorkflowService client for a weftd at "127.0.0.1:port", on the transport of `@weft/sdk`
 * (`createWeftTransport`, as `createWeftClient` uses it).
 */
export function workflowClient(address: string): WorkflowClient {
  return createClient(WorkflowService, createWeftTransport({ address }).transport);
}

/** A google.protobuf.Value from plain JSON. */
export function value(json: JsonValue): Value {
  return fromJson(ValueSchema, json);
}

export type TaskInit = MessageInitShape<typeof TaskDefinitionSchema>;
export type WorkflowInit = MessageInitShape<typeof WorkflowDefinitionSchema>;

/** A no-op task of the bench: handler "noop" on `queue`. */
export function noopTask(id: string, queue: string, dependsOn: string[] = []): TaskInit {
  return { id, handler: "noop", queue, dependsOn };
}

/** `n` independent tasks. */
export function parallelWorkflow(name: string, queue: string, n: number): WorkflowInit {
  return { name, tasks: Array.from({ length: n }, (_, i) => noopTask(`t${i}`, queue)) };
}

/** `n` tasks, each depending on the previous one. */
export function chainWorkflow(name: string, queue: string, n: number): WorkflowInit {
  return {
    name,
    tasks: Array.from({ length: n }, (_, i) => noopTask(`t${i}`, queue, i === 0 ? [] : [`t${i - 1}`])),
  };
}

/** 1 → `width` → 1. */
export function fanWorkflow(name: string, queue: string, width: number): WorkflowInit {
  const middle = Array.from({ length: width }, (_, i) => noopTask(`m${i}`, queue, ["root"]));
  return {
    name,
    tasks: [
      noopTask("root", queue),
      ...middle,
      noopTask(
        "sink",
        queue,
        middle.map((t) => t.id as string),
      ),
    ],
  };
}

/**
 * `n` tasks in layers of `width`; each task after the first layer depends on two tasks of the layer
 * before (the same position and the next one), so the DAG has about 2n edges and n / width layers.
 */
export function layeredWorkflow(name: string, queue: string, n: number, width = 100): WorkflowInit {
  const tasks: TaskInit[] = [];
  for (let i = 0; i < n; i++) {
    const layer = Math.floor(i / width);
    const pos = i % width;
    const deps =
      layer === 0
        ? []
        : [...new Set([pos, (pos + 1) % width])].map((p) => `t${(layer - 1) * width + p}`).filter(Boolean);
    tasks.push(noopTask(`t${i}`, queue, deps));
  }
  return { name, tasks };
}

/** Runs `fn` for 0..n-1 with at most `concurrency` calls in flight. */
export async function inParallel(
  n: number,
  concurrency: number,
  fn: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, n) }, async () => {
    while (next < n) {
      const i = next++;
      await fn(i);
    }
  });
  await Promise.all(lanes);
}
