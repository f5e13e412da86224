import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AdminService } from "@weft/sdk/gen/weft/v1/admin_service_pb.js";
import { FailureService } from "@weft/sdk/gen/weft/v1/failure_service_pb.js";
import { EventType, type RunEvent, RunStatus, TaskStatus } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { type TaskAssignment, WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import type { TaskDefinition, TaskDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";

/** Connect clients of both Weft services over gRPC (HTTP/2). */
export interface WeftClients {
  workflows: Client<typeof WorkflowService>;
  workers: Client<typeof WorkerService>;
  admin: Client<typeof AdminService>;
  failures: Client<typeof FailureService>;
}

/** Clients for a daemon at `address` ("127.0.0.1:port"). */
export function weftClients(address: string, interceptors: Interceptor[] = []): WeftClients {
  const transport = createGrpcTransport({ baseUrl: `http://${address}`, interceptors });
  return {
    workflows: createClient(WorkflowService, transport),
    workers: createClient(WorkerService, transport),
    admin: createClient(AdminService, transport),
    failures: createClient(FailureService, transport),
  };
}

/** A google.protobuf.Value from plain JSON. */
export function value(json: JsonValue): Value {
  return fromJson(ValueSchema, json);
}

/** Plain JSON from a google.protobuf.Value (undefined when unset). */
export function json(v: Value | undefined): JsonValue | undefined {
  return v === undefined ? undefined : toJson(ValueSchema, v);
}

/** A task definition, handler "echo" on `queue` unless given. */
export function task(
  id: string,
  dependsOn: string[] = [],
  extra: Omit<MessageInitShape<typeof TaskDefinitionSchema>, "id" | "$typeName"> = {},
): MessageInitShape<typeof TaskDefinitionSchema> {
  return { handler: "echo", ...extra, id, dependsOn };
}

/** Submits a workflow of `n` independent tasks on a fresh queue named `<prefix>-<id>` and triggers one run. */
export async function wideRun(c: WeftClients, prefix: string, n: number) {
  const queue = `${prefix}-${randomUUID().slice(0, 8)}`;
  await c.workflows.submitWorkflow({
    definition: { name: queue, tasks: Array.from({ length: n }, (_, i) => task(`t${i}`, [], { queue })) },
  });
  const { run } = await c.workflows.trigger({ workflow: queue, input: value({ n }) });
  return { queue, runId: run?.id ?? "" };
}

/** Polls once with a wait; fails when no task arrives. */
export async function pollTask(c: WeftClients, queue: string, workerId = "test-worker", waitSeconds = 10n) {
  const res = await c.workers.pollTask({ queue, workerId, wait: { seconds: waitSeconds } });
  if (res.assignment === undefined)
    throw new Error(`no task arrived on queue "${queue}" within ${waitSeconds}s`);
  return res.assignment;
}

/** Collects a run's events until the stream ends. */
export async function collectEvents(c: WeftClients, runId: string, afterSequence = 0n): Promise<RunEvent[]> {
  const events: RunEvent[] = [];
  for await (const res of c.workflows.watchRun({ runId, afterSequence })) {
    if (res.event) events.push(res.event);
  }
  return events;
}

/** Short, readable form of an event: "TASK_STARTED a#1". */
export function describeEvent(e: RunEvent): string {
  const type = EventType[e.type];
  if (e.type === EventType.RUN_STARTED || e.type === EventType.RUN_RESUMED) return type;
  if (e.type === EventType.RUN_FINISHED) return `${type} ${RunStatus[e.runStatus]}`;
  return `${type} ${e.taskId}#${e.attempt}`;
}

/** The error a promise rejected with, as a ConnectError. */
export async function rpcError(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail, but it succeeded");
}

export type { TaskAssignment, TaskDefinition };
export { EventType, RunStatus, TaskStatus };
