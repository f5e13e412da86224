/**
 * JSON values (google.protobuf.Value) are checked at the door, on every protocol and every field
 * that carries one: nested at most MAX_JSON_DEPTH levels, no empty Value, finite numbers. What is
 * accepted can be read back by a standard client (protobuf-es's decoder, as grpc-js clients use it,
 * refuses messages nested past 100 levels); what is refused is INVALID_ARGUMENT naming the field.
 */
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { promisify } from "node:util";
import {
  create,
  type DescMethodUnary,
  type DescService,
  type JsonValue,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  compressionGzip,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { grpcUnaryTransport } from "@weft/sdk";
import { EventType } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { WorkerService, type WorkRequestSchema } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pythonExecutable } from "./fixtures/runtimes.js";
import {
  connectJson,
  type grpc,
  grpcClient,
  grpcServerStream,
  grpcUnary,
  REPO_ROOT,
  type RedisServer,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
  within,
} from "./support/index.js";
import {
  json,
  pollTask,
  RunStatus,
  rpcError,
  TaskStatus,
  task,
  value,
  type WeftClients,
  weftClients,
} from "./support/weft.js";

const run = promisify(execFile);

/** The limit weftd documents (daemon/src/engine/shared/json-values.ts). */
const LIMIT = 30;

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;
let grpcJs: grpc.Client;
let session: Http2SessionManager | undefined;

function sdkSession(baseUrl: string): Http2SessionManager {
  session = new Http2SessionManager(baseUrl);
  return session;
}

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
  c = weftClients(weftd.address);
  grpcJs = grpcClient(weftd.address);
});

afterAll(async () => {
  grpcJs?.close();
  session?.abort();
  await weftd?.stop();
  await redis?.close();
});

/** JSON of `levels` objects and arrays, one inside the other, around "leaf". */
function nestedJson(levels: number): JsonValue {
  let out: JsonValue = "leaf";
  for (let i = 0; i < levels; i++) out = i % 2 === 0 ? [out] : { k: out };
  return out;
}

/** The Value of nestedJson(levels), built without fromJson (whose decoder stops at 100 levels). */
function nested(levels: number): Value {
  let out = create(ValueSchema, { kind: { case: "stringValue", value: "leaf" } });
  for (let i = 0; i < levels; i++) {
    out = create(ValueSchema, {
      kind:
        i % 2 === 0
          ? { case: "listValue", value: { values: [out] } }
          : { case: "structValue", value: { fields: { k: out } } },
    });
  }
  return out;
}
/** A list whose second item is an empty Value (no kind set). */
const emptyInList = (): Value =>
  create(ValueSchema, { kind: { case: "listValue", value: { values: [value(1), create(ValueSchema)] } } });
/** { x: NaN }. */
const nanInObject = (): Value =>
  create(ValueSchema, {
    kind: {
      case: "structValue",
      value: { fields: { x: create(ValueSchema, { kind: { case: "numberValue", value: Number.NaN } }) } },
    },
  });

/** The bad values, each with what weftd says of it after the field's name. */
const BAD: [string, () => Value, string, boolean][] = [
  // [what, value, problem, can JSON carry it]
  [
    "one level too deep",
    () => nested(LIMIT + 1),
    `nests ${LIMIT + 1} levels; at most ${LIMIT} are allowed`,
    true,
  ],
  ["51 levels", () => nested(51), `nests 51 levels; at most ${LIMIT} are allowed`, true],
  [
    "an empty Value in a list",
    emptyInList,
    "holds an empty google.protobuf.Value (no kind set) at [1]",
    false,
  ],
  ["NaN", nanInObject, "holds the number NaN at .x; JSON numbers must be finite", false],
];

/** The Weft services through grpc-js, encoding with protobuf-es (test/support/grpc.ts). */
function grpcJsService<S extends DescService>(service: S): Client<S> {
  const client: Record<string, unknown> = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary") continue;
    client[method.localName] = async (request: never) => {
      try {
        return await grpcUnary(grpcJs, method as DescMethodUnary, request);
      } catch (err) {
        const e = err as grpc.ServiceError;
        throw new ConnectError(e.details, e.code as number as Code);
      }
    };
  }
  return client as Client<S>;
}

type Protocol = [
  string,
  { workflows: Client<typeof WorkflowService>; workers: Client<typeof WorkerService> },
  boolean,
];
let made: Protocol[] | undefined;

/** Every way a client reaches the unary methods, binary unless JSON is said (made once). */
function protocols(): Protocol[] {
  made ??= makeProtocols();
  return made;
}

function makeProtocols(): Protocol[] {
  const baseUrl = weftd.baseUrl;
  const of = (transport: Transport) => ({
    workflows: createClient(WorkflowService, transport),
    workers: createClient(WorkerService, transport),
  });
  return [
    [
      "gRPC, grpc-js (weftd's direct path)",
      { workflows: grpcJsService(WorkflowService), workers: grpcJsService(WorkerService) },
      false,
    ],
    [
      "gRPC, the SDK's direct transport",
      of(grpcUnaryTransport({ baseUrl, sessionManager: sdkSession(baseUrl), interceptors: [] })),
      false,
    ],
    [
      "gRPC, gzip (Connect's path)",
      of(createGrpcTransport({ baseUrl, sendCompression: compressionGzip })),
      false,
    ],
    ["gRPC-Web over HTTP/1.1", of(createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })), false],
    [
      "Connect binary over HTTP/1.1",
      of(createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true })),
      false,
    ],
    [
      "Connect JSON over HTTP/1.1",
      of(createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false })),
      true,
    ],
  ];
}

async function outcome(call: Promise<unknown>): Promise<[Code | 0, string]> {
  try {
    await call;
    return [0, ""];
  } catch (err) {
    const e = ConnectError.from(err);
    return [e.code, e.rawMessage];
  }
}

/** A one-task workflow on its own queue; returns its name (and queue). */
async function oneTask(prefix: string): Promise<string> {
  const name = `${prefix}-${randomUUID().slice(0, 8)}`;
  await c.workflows.submitWorkflow({ definition: { name, tasks: [task("a", [], { queue: name })] } });
  return name;
}

describe("a JSON value that is too deep, holds an empty Value or NaN", () => {
  it("is refused INVALID_ARGUMENT naming the field, on every protocol and every field, and nothing is stored", async () => {
    const name = await oneTask("bad");
    const runId = (await c.workflows.trigger({ workflow: name, input: value("ok") })).run?.id ?? "";
    const leased = await pollTask(c, name);
    const failures: string[] = [];
    for (const [protocol, client, isJson] of protocols()) {
      for (const [what, bad, problem, jsonCarries] of BAD) {
        if (isJson && !jsonCarries) continue;
        const cases: [string, () => Promise<unknown>, string][] = [
          ["Trigger", () => client.workflows.trigger({ workflow: name, input: bad() }), "input"],
          [
            "BatchTrigger",
            () =>
              client.workflows.batchTrigger({
                requests: [
                  { workflow: name, input: value(1) },
                  { workflow: name, input: bad() },
                ],
              }),
            "requests[1].input",
          ],
          [
            "SubmitWorkflow",
            () =>
              client.workflows.submitWorkflow({
                definition: { name: `${name}-v`, tasks: [task("a"), task("b", [], { input: bad() })] },
              }),
            "definition.tasks[1].input",
          ],
          [
            "SubmitWorkflow validate_only",
            () =>
              client.workflows.submitWorkflow({
                validateOnly: true,
                definition: { name: `${name}-v`, tasks: [task("a", [], { input: bad() })] },
              }),
            "definition.tasks[0].input",
          ],
          [
            "CompleteTask",
            () => client.workers.completeTask({ leaseId: leased.leaseId, output: bad() }),
            "output",
          ],
          [
            "Heartbeat",
            () => client.workers.heartbeat({ leaseId: leased.leaseId, progress: bad() }),
            "progress",
          ],
        ];
        for (const [method, call, field] of cases) {
          const got = await outcome(call());
          const want: [Code, string] = [Code.InvalidArgument, `${field}: ${problem}`];
          if (JSON.stringify(got) !== JSON.stringify(want)) {
            failures.push(
              `${protocol}, ${method}, ${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`,
            );
          }
        }
        const { results } = await client.workers.completeTasks({
          completions: [
            { leaseId: `${leased.leaseId}-other`, output: value(1) },
            { leaseId: leased.leaseId, output: bad() },
          ],
        });
        const got = [results[1]?.code, results[1]?.message];
        const want = [Code.InvalidArgument, `completions[1].output: ${problem}`];
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          failures.push(
            `${protocol}, CompleteTasks, ${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`,
          );
        }
      }
    }
    expect(failures).toEqual([]);
    // Nothing was stored: one run, its task still running under its lease, no second workflow.
    const { runs } = await c.workflows.listRuns({ workflow: name });
    expect(runs.map((r) => r.id)).toEqual([runId]);
    expect((await rpcError(c.workflows.getWorkflow({ name: `${name}-v` }))).code).toBe(Code.NotFound);
    const { run } = await c.workflows.getRun({ runId });
    expect(run?.tasks.map((t) => [TaskStatus[t.status], t.progress])).toEqual([["RUNNING", undefined]]);
    await c.workers.completeTask({ leaseId: leased.leaseId, output: value("done") });
    expect((await c.workflows.getRun({ runId })).run?.status).toBe(RunStatus.SUCCEEDED);
  });

  it("is refused as a Work stream's output with INVALID_ARGUMENT naming the completion, the stream going on", async () => {
    const name = await oneTask("bad-work");
    const runId = (await c.workflows.trigger({ workflow: name })).run?.id ?? "";
    const first = openWork(createGrpcTransport({ baseUrl: weftd.baseUrl }));
    first.send({ queue: name, workerId: "w", credits: 1 });
    const leaseId = (await first.next("the assignment")).assignments[0]?.leaseId ?? "";
    // The lease outlives its stream: the second stream reports on it too.
    const second = openWork(
      createConnectTransport({ baseUrl: weftd.baseUrl, httpVersion: "2", useBinaryFormat: true }),
    );
    second.send({ queue: name, workerId: "w2" });
    for (const [protocol, work] of [
      ["gRPC", first],
      ["Connect binary", second],
    ] as const) {
      work.send({
        completions: BAD.map(([, bad], i) => ({
          leaseId: i === 0 ? leaseId : `${leaseId}-${i}`,
          output: bad(),
        })),
      });
      const answer = await work.next("the answers");
      expect(
        answer.results.map((r) => [r.code, r.message]),
        protocol,
      ).toEqual(
        BAD.map(([, , problem], i) => [Code.InvalidArgument, `completions[${i}].output: ${problem}`]),
      );
      work.halfClose();
      await work.end();
    }
    const { run } = await c.workflows.getRun({ runId });
    expect(run?.tasks.map((t) => TaskStatus[t.status])).toEqual(["RUNNING"]);
    await c.workers.completeTask({ leaseId, output: value("done") });
    expect((await c.workflows.getRun({ runId })).run?.status).toBe(RunStatus.SUCCEEDED);
  });
});

describe("a request nested past what weftd decodes", () => {
  // Past 256 message levels in binary (two per level) and in JSON (one per level).
  const tooDeep = () => nested(300);
  const refusal =
    "the request message nests deeper than 256 message levels and was not decoded; " +
    `a JSON value (google.protobuf.Value) may nest at most ${LIMIT} levels`;

  it("is refused INVALID_ARGUMENT, not INTERNAL, on every protocol, and weftd goes on serving", async () => {
    const name = await oneTask("too-deep");
    const answers = [];
    for (const [protocol, client, isJson] of protocols()) {
      const [code, message] = await outcome(client.workflows.trigger({ workflow: name, input: tooDeep() }));
      // Connect's own JSON decoder says why in its words; binary ones get weftd's.
      answers.push([
        protocol,
        code,
        isJson ? /maximum recursion depth of 256 reached/.test(message) : message,
      ]);
    }
    expect(answers).toEqual(
      protocols().map(([protocol, , isJson]) => [protocol, Code.InvalidArgument, isJson ? true : refusal]),
    );
    expect((await c.workflows.listRuns({ workflow: name })).runs).toEqual([]);
    expect((await c.workflows.trigger({ workflow: name })).created).toBe(true);
  });

  it("ends a Work stream with INVALID_ARGUMENT", async () => {
    const name = await oneTask("too-deep-work");
    const work = openWork(createGrpcTransport({ baseUrl: weftd.baseUrl }));
    work.send({ queue: name, workerId: "w", completions: [{ leaseId: "x", output: tooDeep() }] });
    const err = await rpcError(work.end());
    expect([err.code, err.rawMessage]).toEqual([Code.InvalidArgument, refusal]);
  });
});

describe("a JSON value nested as deep as allowed", () => {
  it("is accepted on every field and read back by a grpc-js client from every answer that carries it", async () => {
    const deep = nestedJson(LIMIT);
    const name = `deep-${randomUUID().slice(0, 8)}`;
    const workflows = grpcJsService(WorkflowService);
    const workers = grpcJsService(WorkerService);
    await workflows.submitWorkflow({
      definition: {
        name,
        tasks: [task("a", [], { queue: name, input: value(deep) }), task("b", ["a"], { queue: name })],
      },
    });
    expect(json((await workflows.getWorkflow({ name })).workflow?.definition?.tasks[0]?.input)).toEqual(deep);
    const { run: started } = await workflows.trigger({ workflow: name, input: value(deep) });
    const runId = started?.id ?? "";
    expect(json(started?.input)).toEqual(deep);
    const a = (await workers.pollTask({ queue: name, workerId: "w", wait: { seconds: 10n } })).assignment;
    expect([json(a?.input), json(a?.runInput)]).toEqual([deep, deep]);
    await workers.heartbeat({ leaseId: a?.leaseId, progress: value(deep) });
    expect(json((await workflows.getRun({ runId })).run?.tasks[0]?.progress)).toEqual(deep);
    await workers.completeTask({ leaseId: a?.leaseId, output: value(deep) });
    const b = (await workers.pollTask({ queue: name, workerId: "w", wait: { seconds: 10n } })).assignment;
    expect(json(b?.parentOutputs.a)).toEqual(deep);
    const { results } = await workers.completeTasks({
      completions: [{ leaseId: b?.leaseId, output: value(deep) }],
    });
    expect(results.map((r) => r.code)).toEqual([0]);
    // The run's output nests the leaf's output one level down: one level past the limit, still readable.
    const { run } = await workflows.getRun({ runId });
    expect(RunStatus[run?.status ?? 0]).toBe("SUCCEEDED");
    expect(json(run?.output)).toEqual({ b: deep });
    expect(run?.tasks.map((t) => json(t.output))).toEqual([deep, deep]);
    expect(json((await workflows.listRuns({ workflow: name })).runs[0]?.input)).toEqual(deep);
    const events = await new Promise<unknown[]>((resolve, reject) => {
      const got: unknown[] = [];
      const stream = grpcServerStream(grpcJs, WorkflowService.method.watchRun, { runId });
      stream.on("data", (res: { event?: { type: EventType; output?: Value } }) => {
        if (res.event?.output !== undefined) got.push([EventType[res.event.type], json(res.event.output)]);
      });
      stream.on("error", reject);
      stream.on("end", () => resolve(got));
    });
    expect(events).toEqual([
      ["TASK_COMPLETED", deep],
      ["TASK_COMPLETED", deep],
      ["RUN_FINISHED", { b: deep }],
    ]);
  });

  it("is read back by a Python client (grpcio, upb: three message levels per object) from every answer", async () => {
    // Objects all the way down: the deepest encoding for decoders that count a map's entries.
    let deep: JsonValue = "leaf";
    for (let i = 0; i < LIMIT; i++) deep = { k: deep };
    const name = `deep-py-${randomUUID().slice(0, 8)}`;
    await c.workflows.submitWorkflow({
      definition: {
        name,
        tasks: [task("a", [], { queue: name, input: value(deep) }), task("b", ["a"], { queue: name })],
      },
    });
    const runId = (await c.workflows.trigger({ workflow: name, input: value(deep) })).run?.id ?? "";
    const a = await pollTask(c, name);
    await c.workers.completeTask({ leaseId: a.leaseId, output: value(deep) });
    // The script takes task b (its parent's output is the deep value) and completes it with that output.
    const { stdout } = await run(
      pythonExecutable(),
      [`${REPO_ROOT}test/fixtures/deep-reader.py`, weftd.address, name, runId, name],
      { timeout: 30_000 },
    );
    expect(JSON.parse(stdout)).toEqual({
      parentOutput: LIMIT,
      runInput: LIMIT,
      runStatus: RunStatus.SUCCEEDED,
      runOutput: LIMIT + 1,
      taskOutputs: [LIMIT, LIMIT],
      eventOutputs: [LIMIT, LIMIT, LIMIT + 1],
      taskInput: LIMIT,
    });
  });

  it("is accepted over Connect JSON and read back in binary", async () => {
    const deep = nestedJson(LIMIT);
    const name = await oneTask("deep-json");
    const answer = await connectJson(weftd.baseUrl, "weft.v1.WorkflowService/Trigger", {
      workflow: name,
      input: deep,
    });
    expect(answer.status).toBe(200);
    const runId = (answer.body.run as { id: string }).id;
    expect(json((await grpcJsService(WorkflowService).getRun({ runId })).run?.input)).toEqual(deep);
    const refused = await connectJson(weftd.baseUrl, "weft.v1.WorkflowService/Trigger", {
      workflow: name,
      input: nestedJson(LIMIT + 1),
    });
    expect([refused.status, refused.body]).toEqual([
      400,
      expect.objectContaining({
        code: "invalid_argument",
        message: `input: nests ${LIMIT + 1} levels; at most ${LIMIT} are allowed`,
      }),
    ]);
  });
});

type WorkRequest = MessageInitShape<typeof WorkRequestSchema>;

/** A Work stream driven by hand: send messages, read responses one at a time, half-close. */
function openWork(transport: Transport) {
  const queued: WorkRequest[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  const requests = (async function* () {
    for (;;) {
      const next = queued.shift();
      if (next !== undefined) yield next;
      else if (closed) return;
      else await new Promise<void>((resolve) => (wake = resolve));
    }
  })();
  const responses = createClient(WorkerService, transport).work(requests)[Symbol.asyncIterator]();
  return {
    send(message: WorkRequest) {
      queued.push(message);
      wake?.();
    },
    halfClose() {
      closed = true;
      wake?.();
    },
    async next(what: string) {
      const r = await within(responses.next(), 10_000, what);
      if (r.done === true) throw new Error(`the stream ended before ${what}`);
      return r.value;
    },
    async end(): Promise<void> {
      for (;;) if ((await within(responses.next(), 10_000, "the end of the stream")).done === true) return;
    },
  };
}
