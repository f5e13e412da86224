import { randomUUID } from "node:crypto";
import { type DescMessage, type DescMethodUnary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { createWeftClient } from "@weft/sdk";
import { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  grpc,
  grpcUnary,
  type RedisServer,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
  waitFor,
} from "./support/index.js";
import {
  collectEvents,
  EventType,
  json,
  RunStatus,
  rpcError,
  TaskStatus,
  task,
  value,
  type WeftClients,
  weftClients,
} from "./support/weft.js";

/** The answer limit of the daemon under test: small, so that the tests move KB, not GB. */
const MAX = 256 * 1024;
const PAYLOAD = 64 * 1024;

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;
/** A grpc-js client that refuses any message over MAX, as a client with that receive limit would. */
let strict: grpc.Client;
/** A grpc-js client with grpc-js's default receive limit (4 MiB). */
let plain: grpc.Client;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({
    redisUrl: redis.url,
    args: ["--max-payload-bytes", "64KiB", "--max-response-bytes", "256KiB", "--stalled-interval", "300ms"],
  });
  c = weftClients(weftd.address);
  strict = new grpc.Client(weftd.address, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": MAX,
  });
  plain = new grpc.Client(weftd.address, grpc.credentials.createInsecure());
});

afterAll(async () => {
  strict?.close();
  plain?.close();
  await weftd?.stop();
  await redis?.close();
});

function names(label: string) {
  const id = randomUUID().slice(0, 8);
  return { queue: `${label}-${id}`, workflow: `${label}-${id}` };
}

/** Calls a unary method with the strict grpc-js client and checks the answer's size. */
async function call<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  request: MessageInitShape<I>,
) {
  const answer = await grpcUnary(strict, method, request);
  expect(toBinary(method.output, answer).length).toBeLessThanOrEqual(MAX);
  return answer;
}

const getRun = WorkflowService.method.getRun;
const getTaskRun = WorkflowService.method.getTaskRun;
const pollTask = WorkerService.method.pollTask;

/** Waits until the run is no longer RUNNING: the liveness check every fault test ends with. */
async function finished(runId: string) {
  return waitFor(
    async () => {
      const { run } = await call(getRun, { runId });
      return run !== undefined && run.status !== RunStatus.RUNNING ? run : undefined;
    },
    { timeoutMs: 15_000, message: `run ${runId} to reach a final state` },
  );
}

describe("fan-in over the assignment budget", () => {
  it("fails the child with InputsTooLarge, hands no worker an oversize message, and the run ends", async () => {
    const { queue, workflow } = names("fanin");
    const parents = Array.from({ length: 8 }, (_, i) => `p${i}`);
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        tasks: [...parents.map((id) => task(id, [], { queue })), task("child", parents, { queue })],
      },
    });
    const { run } = await c.workflows.trigger({ workflow, input: value({ fan: 8 }) });
    const runId = run?.id ?? "";

    // The parents, polled with a client that refuses anything over the limit: 8 × 40 KB of output
    // together exceed the 256 KiB one assignment may carry.
    const first = await call(pollTask, { queue, workerId: "w", wait: { seconds: 10n }, maxTasks: 8 });
    const leased = [first.assignment, ...first.moreAssignments].filter((a) => a !== undefined);
    expect(leased.map((a) => a.taskId).sort()).toEqual(parents);
    const outputs = new Map(parents.map((id, i) => [id, `${i}`.repeat(40_000)]));
    for (const a of leased) {
      await c.workers.completeTask({ leaseId: a.leaseId, output: value(outputs.get(a.taskId) ?? "") });
    }

    // The child is ready now; the poll that takes it fails it instead of answering with it.
    const after = await call(pollTask, { queue, workerId: "w", wait: { seconds: 1n }, maxTasks: 8 });
    expect(after.assignment).toBeUndefined();
    const done = await finished(runId);
    expect(done.status).toBe(RunStatus.FAILED);
    const child = done.tasks.find((t) => t.taskId === "child");
    expect(child?.status).toBe(TaskStatus.FAILED);
    expect(child?.attempt).toBe(1);
    expect(child?.error?.type).toBe("InputsTooLarge");
    expect(child?.error?.message).toMatch(
      /^the assignment of task "child" would take \d+ bytes, more than the 262128 one assignment may \(--max-response-bytes 262144\): the outputs of its 8 parents take 320016 bytes, the run input 9, its own input 0; it was handed to no worker$/,
    );
    expect(done.error).toContain('task "child" failed: InputsTooLarge: the assignment of task "child"');
    // Its dead-letter entry, read whole within the answer limit: the parents' outputs do not all fit.
    const entry = await c.failures.getDeadLetter({ id: `${runId}/child/0` });
    expect([entry.deadLetter?.error?.type, entry.deadLetter?.attempts]).toEqual(["InputsTooLarge", 1]);
    expect(entry.omittedFields).toEqual(["parent_outputs"]);
    expect(Object.keys(entry.parentOutputs).length).toBeLessThan(8);
    expect(Object.keys(entry.parentOutputs).length).toBeGreaterThan(0);

    // GetRun stays under the limit: the outputs that did not fit are left out, with their sizes.
    const omitted = done.tasks.filter((t) => t.omittedFields.includes("output"));
    const included = done.tasks.filter((t) => t.output !== undefined);
    expect(omitted.length).toBeGreaterThan(0);
    expect(omitted.length + included.length).toBe(8);
    for (const t of done.tasks.filter((t) => t.taskId !== "child")) {
      expect(t.outputBytes).toBe(40_002n);
    }
    for (const t of included) expect(json(t.output)).toBe(outputs.get(t.taskId));
    // Each output comes whole from GetTaskRun.
    for (const id of parents) {
      const { task: one } = await call(getTaskRun, { runId, taskId: id });
      expect(one?.omittedFields).toEqual([]);
      expect(json(one?.output)).toBe(outputs.get(id));
    }
    const events = await collectEvents(c, runId);
    expect(events.at(-1)?.type).toBe(EventType.RUN_FINISHED);
  });
});

describe("a poll of up to 256 tasks over large inputs", () => {
  it("answers fewer assignments within the limit and leaves the rest queued, their attempts unused", async () => {
    const { queue, workflow } = names("batch");
    const n = 12;
    await c.workflows.submitWorkflow({
      definition: {
        name: workflow,
        tasks: Array.from({ length: n }, (_, i) =>
          task(`t${i}`, [], { queue, input: value("i".repeat(20_000)) }),
        ),
      },
    });
    const { run } = await c.workflows.trigger({ workflow, input: value("r".repeat(20_000)) });
    const runId = run?.id ?? "";
    // Each assignment carries 40 KB: about six fit in 256 KiB.
    const first = await call(pollTask, { queue, workerId: "w", wait: { seconds: 10n }, maxTasks: 256 });
    const got = [first.assignment, ...first.moreAssignments].filter((a) => a !== undefined);
    expect(got.length).toBeGreaterThan(1);
    expect(got.length).toBeLessThan(n);
    for (const a of got) {
      expect(json(a.runInput)).toBe("r".repeat(20_000));
      expect(json(a.input)).toBe("i".repeat(20_000));
    }
    const { run: view } = await call(getRun, { runId });
    const queued = view?.tasks.filter((t) => t.status === TaskStatus.QUEUED) ?? [];
    expect(queued.length).toBe(n - got.length);
    expect(queued.every((t) => t.attempt === 0)).toBe(true);

    // The rest come to the next polls, each on its first attempt.
    const rest = [];
    while (got.length + rest.length < n) {
      const more = await call(pollTask, { queue, workerId: "w", wait: { seconds: 10n }, maxTasks: 256 });
      const batch = [more.assignment, ...more.moreAssignments].filter((a) => a !== undefined);
      expect(batch.length).toBeGreaterThan(0);
      rest.push(...batch);
    }
    expect([...got, ...rest].map((a) => a.attempt)).toEqual(Array(n).fill(1));
    for (const a of [...got, ...rest])
      await c.workers.completeTask({ leaseId: a.leaseId, output: value(null) });
    expect((await finished(runId)).status).toBe(RunStatus.SUCCEEDED);
  });
});

describe("a run whose leaves' outputs together exceed the limit", () => {
  it("has no output in its answers and events, marked with its size, and the SDK puts it together", async () => {
    const { queue, workflow } = names("leaves");
    const leaves = Array.from({ length: 5 }, (_, i) => `leaf${i}`);
    await c.workflows.submitWorkflow({
      definition: { name: workflow, tasks: leaves.map((id) => task(id, [], { queue })) },
    });
    const { run } = await c.workflows.trigger({ workflow, input: value(null) });
    const runId = run?.id ?? "";
    const polled = await call(pollTask, { queue, workerId: "w", wait: { seconds: 10n }, maxTasks: 5 });
    for (const a of [polled.assignment, ...polled.moreAssignments].filter((x) => x !== undefined)) {
      await c.workers.completeTask({
        leaseId: a.leaseId,
        output: value({ id: a.taskId, pad: "x".repeat(50_000) }),
      });
    }
    const done = await finished(runId);
    expect(done.status).toBe(RunStatus.SUCCEEDED);
    expect(done.output).toBeUndefined();
    expect(done.omittedFields).toContain("output");
    expect(done.outputBytes).toBeGreaterThan(250_000n);
    const events = await collectEvents(c, runId);
    const last = events.at(-1);
    expect([last?.type, last?.output, last?.omittedFields]).toEqual([
      EventType.RUN_FINISHED,
      undefined,
      ["output"],
    ]);
    expect(last?.outputBytes).toBe(done.outputBytes);

    const sdk = createWeftClient({ address: weftd.address });
    try {
      const output = (await sdk.result(runId)) as Record<string, { id: string }>;
      expect(Object.keys(output)).toEqual(leaves);
      expect(leaves.map((id) => output[id]?.id)).toEqual(leaves);
      expect(await sdk.getTaskOutput(runId, "leaf3")).toEqual({ id: "leaf3", pad: "x".repeat(50_000) });
    } finally {
      sdk.close();
    }
  });
});

describe("ListRuns", () => {
  it("answers fewer runs than asked for when more would not fit, and pages through all of them", async () => {
    const { queue, workflow } = names("list");
    await c.workflows.submitWorkflow({ definition: { name: workflow, tasks: [task("a", [], { queue })] } });
    const ids = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const { run } = await c.workflows.trigger({ workflow, input: value(`${i}`.repeat(60_000)) });
      ids.add(run?.id ?? "");
    }
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await call(WorkflowService.method.listRuns, { workflow, pageSize: 100, pageToken });
      pages++;
      for (const r of page.runs) {
        expect(r.omittedFields).toEqual([]);
        expect((json(r.input) as string).length).toBe(60_000);
        seen.push(r.id);
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(pages).toBeGreaterThan(2);
    expect(new Set(seen)).toEqual(ids);
    expect(seen.length).toBe(10);
    // The same pages read with a default client, and with the SDK.
    const sdk = createWeftClient({ address: weftd.address });
    try {
      const all = [];
      for await (const r of sdk.listRuns({ workflow })) all.push(r.id);
      expect(new Set(all)).toEqual(ids);
    } finally {
      sdk.close();
    }
    await Promise.all([...ids].map((runId) => c.workflows.cancel({ runId })));
  });
});

describe("GetTaskRun", () => {
  it("answers NOT_FOUND for an unknown run or task and INVALID_ARGUMENT naming missing fields", async () => {
    const { queue, workflow } = names("get-task");
    await c.workflows.submitWorkflow({ definition: { name: workflow, tasks: [task("a", [], { queue })] } });
    const { run } = await c.workflows.trigger({ workflow });
    const runId = run?.id ?? "";
    const unknownRun = randomUUID();
    const e1 = await rpcError(c.workflows.getTaskRun({ runId: unknownRun, taskId: "a" }));
    expect([e1.code, e1.rawMessage]).toEqual([Code.NotFound, `run "${unknownRun}" not found`]);
    const e2 = await rpcError(c.workflows.getTaskRun({ runId, taskId: "nope" }));
    expect([e2.code, e2.rawMessage]).toEqual([
      Code.NotFound,
      `task "nope" not found in run "${runId}" (workflow "${workflow}" version 1)`,
    ]);
    const e3 = await rpcError(c.workflows.getTaskRun({}));
    expect([e3.code, e3.rawMessage]).toEqual([
      Code.InvalidArgument,
      "run_id: is required; task_id: is required",
    ]);
    const e4 = await rpcError(c.workflows.getTaskRun({ runId: "x", taskId: "a" }));
    expect([e4.code, e4.rawMessage]).toEqual([Code.InvalidArgument, 'run_id: "x" is not a run id']);
    const { task: queued } = await c.workflows.getTaskRun({ runId, taskId: "a" });
    expect([queued?.taskId, queued?.status, queued?.output]).toEqual(["a", TaskStatus.QUEUED, undefined]);
    const e5 = await rpcError(c.workflows.getRun({ runId, taskPageToken: "bogus" }));
    expect([e5.code, e5.rawMessage]).toEqual([
      Code.InvalidArgument,
      "task_page_token: is not a token returned by GetRun",
    ]);
    await c.workflows.cancel({ runId });
  });
});

describe("what can be known at SubmitWorkflow and Trigger", () => {
  it("refuses a task whose input alone could never fit an assignment, and an input over the payload limit once encoded", async () => {
    const { queue, workflow } = names("static");
    // 48 KB of JSON, 264 KB once encoded: a list of one-digit numbers takes 5.5 times its JSON.
    const ones = Array.from({ length: 24_000 }, () => 1);
    const err = await rpcError(
      c.workflows.submitWorkflow({
        definition: { name: workflow, tasks: [task("a", [], { queue, input: value(ones) })] },
      }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(
      /^tasks\[0\]\.input: an assignment of this task would take at least \d+ bytes \(its input, its id and the ids of its 0 parents\), more than the 262128 one assignment may \(--max-response-bytes 262144\); definition: the definition and its execution plan would take \d+ bytes in an answer, more than --max-response-bytes \(262144\) allows$/,
    );
    await c.workflows.submitWorkflow({ definition: { name: workflow, tasks: [task("a", [], { queue })] } });
    const big = await rpcError(
      c.workflows.trigger({ workflow, input: value(Array.from({ length: 12_000 }, () => 7)) }),
    );
    expect(big.code).toBe(Code.ResourceExhausted);
    expect(big.rawMessage).toMatch(new RegExp(`^input: \\d+ bytes exceeds the limit of ${PAYLOAD} bytes$`));
  });
});

describe("a client with the default 4 MiB receive limit", () => {
  it("reads GetRun of a run whose task outputs together are far over the limit", async () => {
    const { queue, workflow } = names("plain");
    const ids = Array.from({ length: 10 }, (_, i) => `t${i}`);
    await c.workflows.submitWorkflow({
      definition: { name: workflow, tasks: ids.map((id) => task(id, [], { queue })) },
    });
    const { run } = await c.workflows.trigger({ workflow, input: value(null) });
    const runId = run?.id ?? "";
    const polled = await call(pollTask, { queue, workerId: "w", wait: { seconds: 10n }, maxTasks: 10 });
    for (const a of [polled.assignment, ...polled.moreAssignments].filter((x) => x !== undefined)) {
      await c.workers.completeTask({ leaseId: a.leaseId, output: value("o".repeat(60_000)) });
    }
    await finished(runId);
    const answer = await grpcUnary(plain, getRun, { runId });
    expect(toBinary(getRun.output, answer).length).toBeLessThanOrEqual(MAX);
    expect(answer.run?.tasks.length).toBe(10);
    expect(answer.run?.tasks.filter((t) => t.omittedFields.includes("output")).length).toBeGreaterThan(0);
  });
});
