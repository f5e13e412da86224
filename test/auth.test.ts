import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { hashToken } from "@weft/daemon";
import { Health } from "@weft/sdk/gen/health/v1/health_pb.js";
import { AdminService } from "@weft/sdk/gen/weft/v1/admin_service_pb.js";
import { CircuitState } from "@weft/sdk/gen/weft/v1/circuit_breaker_pb.js";
import { FailureService } from "@weft/sdk/gen/weft/v1/failure_service_pb.js";
import { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess } from "./support/index.js";
import { RunStatus, rpcError, task, value, type WeftClients, weftClients } from "./support/weft.js";

const TOKENS = {
  client: `client-${randomUUID()}`,
  reader: `reader-${randomUUID()}`,
  admin: `admin-${randomUUID()}`,
  operator: `operator-${randomUUID()}`,
  workerA: `worker-a-${randomUUID()}`,
  workerA2: `worker-a2-${randomUUID()}`,
  workerB: `worker-b-${randomUUID()}`,
};
const SECRET_INPUT = `secret-input-${randomUUID()}`;
const SECRET_OUTPUT = `secret-output-${randomUUID()}`;

let redis: RedisServer;
let weftd: WeftdProcess;
let configArgs: string[] = [];

function bearer(token?: string): Interceptor {
  return (next) => (req) => {
    if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

function clients(token?: string): WeftClients {
  return weftClients(weftd.address, [bearer(token)]);
}

beforeAll(async () => {
  redis = await startTestRedis();
  const dir = mkdtempSync(join(tmpdir(), "weft-auth-"));
  const entry = (name: string, token: string, scopes: string[], queues: string[] = []) =>
    `    - name: ${name}\n      sha256: ${hashToken(token)}\n      scopes: [${scopes.join(", ")}]\n      queues: [${queues.join(", ")}]\n`;
  writeFileSync(
    join(dir, "weft.yaml"),
    "auth:\n  tokens:\n" +
      entry("client", TOKENS.client, ["workflows:write", "runs:trigger", "runs:read", "runs:cancel"]) +
      entry("reader", TOKENS.reader, ["runs:read"]) +
      entry("admin", TOKENS.admin, ["admin"]) +
      entry("operator", TOKENS.operator, ["failures", "runs:resume"]) +
      entry("worker-a", TOKENS.workerA, ["worker"], ["qa"]) +
      entry("worker-a2", TOKENS.workerA2, ["worker"], ["qa"]) +
      entry("worker-b", TOKENS.workerB, ["worker"], ["qb"]),
  );
  configArgs = ["--config", join(dir, "weft.yaml")];
  weftd = await spawnWeftd({ redisUrl: redis.url, args: configArgs, auth: true });
  await clients(TOKENS.client).workflows.submitWorkflow({
    definition: { name: "secured", tasks: [task("a", [], { queue: "qa" })] },
  });
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

const runId = randomUUID();
const lease = `${runId}.1.AAAAAAAAAAAAAAAAAAAAAA.a`;
type Call = (c: WeftClients) => Promise<unknown>;
// Each RPC: the token with its scope, a token without it, and the code the right token gets for this request.
const TABLE: [string, Call, keyof typeof TOKENS, keyof typeof TOKENS, Code | "ok"][] = [
  [
    "SubmitWorkflow",
    (c) => c.workflows.submitWorkflow({ validateOnly: true, definition: { name: "x", tasks: [task("a")] } }),
    "client",
    "reader",
    "ok",
  ],
  ["GetWorkflow", (c) => c.workflows.getWorkflow({ name: "secured" }), "reader", "admin", "ok"],
  ["ListWorkflows", (c) => c.workflows.listWorkflows({}), "reader", "workerA", "ok"],
  ["Trigger", (c) => c.workflows.trigger({ workflow: "missing" }), "client", "reader", Code.NotFound],
  [
    "BatchTrigger",
    (c) => c.workflows.batchTrigger({ requests: [{ workflow: "missing" }] }),
    "client",
    "reader",
    Code.NotFound,
  ],
  ["GetRun", (c) => c.workflows.getRun({ runId }), "reader", "admin", Code.NotFound],
  ["GetTaskRun", (c) => c.workflows.getTaskRun({ runId, taskId: "a" }), "reader", "admin", Code.NotFound],
  ["ListRuns", (c) => c.workflows.listRuns({}), "reader", "workerA", "ok"],
  [
    "WatchRun",
    async (c) => {
      for await (const _ of c.workflows.watchRun({ runId })) break;
    },
    "reader",
    "admin",
    Code.NotFound,
  ],
  [
    "WatchRuns",
    async (c) => {
      const requests = (async function* () {
        yield { addRuns: [{ runId }] };
      })();
      // The stream answers the run's follow (NOT_FOUND, on the stream) and ends: the client half-closed.
      for await (const res of c.workflows.watchRuns(requests)) {
        if (res.rejections[0]?.code === Code.NotFound) return;
      }
      throw new Error("WatchRuns ended without answering the run's follow");
    },
    "reader",
    "admin",
    "ok",
  ],
  ["Cancel", (c) => c.workflows.cancel({ runId }), "client", "reader", Code.NotFound],
  [
    "PollTask",
    (c) => c.workers.pollTask({ queue: "qa", wait: { nanos: 1_000_000 } }),
    "workerA",
    "client",
    "ok",
  ],
  ["Heartbeat", (c) => c.workers.heartbeat({ leaseId: lease }), "workerA", "admin", Code.NotFound],
  ["CompleteTask", (c) => c.workers.completeTask({ leaseId: lease }), "workerA", "reader", Code.NotFound],
  [
    "CompleteTasks",
    (c) => c.workers.completeTasks({ completions: [{ leaseId: "x" }, { leaseId: "x" }] }),
    "workerA",
    "client",
    Code.InvalidArgument,
  ],
  ["FailTask", (c) => c.workers.failTask({ leaseId: lease }), "workerA", "client", Code.NotFound],
  [
    "Work",
    async (c) => {
      // Opens a stream on the queue and half-closes it at once: it ends with no message.
      const requests = (async function* () {
        yield { queue: "qa", workerId: "w" };
      })();
      for await (const _ of c.workers.work(requests)) break;
    },
    "workerA",
    "client",
    "ok",
  ],
  ["GetQueue", (c) => c.admin.getQueue({ name: "never-seen" }), "admin", "client", Code.NotFound],
  ["ListQueues", (c) => c.admin.listQueues({}), "admin", "workerA", "ok"],
  ["UpdateQueue", (c) => c.admin.updateQueue({ name: "qa", concurrency: 0 }), "admin", "reader", "ok"],
  [
    "SetCircuitState",
    (c) => c.admin.setCircuitState({ queue: "never-seen", state: CircuitState.CLOSED }),
    "admin",
    "workerA",
    Code.NotFound,
  ],
  // The failure RPCs are an operator's: a worker token is refused.
  ["ListDeadLetters", (c) => c.failures.listDeadLetters({}), "operator", "workerA", "ok"],
  [
    "GetDeadLetter",
    (c) => c.failures.getDeadLetter({ id: `${runId}/a/0` }),
    "operator",
    "workerA",
    Code.NotFound,
  ],
  [
    "RetryDeadLetter",
    (c) => c.failures.retryDeadLetter({ id: `${runId}/a/0` }),
    "operator",
    "workerA",
    Code.NotFound,
  ],
  [
    "DiscardDeadLetter",
    (c) => c.failures.discardDeadLetter({ id: `${runId}/a/0` }),
    "operator",
    "workerA",
    Code.NotFound,
  ],
  ["RetryDeadLetters", (c) => c.failures.retryDeadLetters({ limit: 1 }), "operator", "workerB", "ok"],
  ["DiscardDeadLetters", (c) => c.failures.discardDeadLetters({ limit: 1 }), "operator", "workerB", "ok"],
  ["ResumeRun", (c) => c.failures.resumeRun({ runId }), "operator", "workerA", Code.NotFound],
];

describe("every RPC × {no token, wrong scope, right scope}", () => {
  it.each(TABLE)("%s", async (_name, call, right, wrong, expected) => {
    const none = await rpcError(call(clients()));
    expect([none.code, none.rawMessage]).toEqual([
      Code.Unauthenticated,
      "missing bearer token: send the metadata 'authorization: Bearer <token>'",
    ]);
    const unknown = await rpcError(call(clients("not-a-configured-token")));
    expect([unknown.code, unknown.rawMessage]).toEqual([Code.Unauthenticated, "unknown token"]);
    const denied = await rpcError(call(clients(TOKENS[wrong])));
    expect(denied.code).toBe(Code.PermissionDenied);
    expect(denied.rawMessage).toMatch(/^token "[a-z0-9-]+" lacks the scope "[a-z:]+" needed by weft\.v1\./);
    if (expected === "ok") await call(clients(TOKENS[right]));
    else expect((await rpcError(call(clients(TOKENS[right])))).code).toBe(expected);
  });

  it("covers every RPC of the Weft services", () => {
    const rpcs = [WorkflowService, WorkerService, AdminService, FailureService].flatMap((s) =>
      s.methods.map((m) => m.name),
    );
    expect(TABLE.map(([name]) => name).sort()).toEqual(rpcs.sort());
  });

  it("leaves health and reflection open", async () => {
    const transport = createGrpcTransport({ baseUrl: weftd.baseUrl });
    const res = await createClient(Health, transport).check({ service: "" });
    expect(res.status).toBe(1);
  });
});

describe("queues and leases", () => {
  it("keeps a worker token to its queues and a lease to the token that took it", async () => {
    const client = clients(TOKENS.client);
    const runId =
      (await client.workflows.trigger({ workflow: "secured", input: value(SECRET_INPUT) })).run?.id ?? "";
    const crossPoll = await rpcError(clients(TOKENS.workerB).workers.pollTask({ queue: "qa" }));
    expect([crossPoll.code, crossPoll.rawMessage]).toEqual([
      Code.PermissionDenied,
      'token "worker-b" may not use queue "qa"',
    ]);

    const a = (await clients(TOKENS.workerA).workers.pollTask({ queue: "qa", wait: { seconds: 5n } }))
      .assignment;
    expect(a?.taskId).toBe("a");
    const leaseId = a?.leaseId ?? "";
    // Another queue's worker: refused by queue. The same queue's other token: refused by lease.
    for (const [token, message] of [
      [TOKENS.workerB, 'token "worker-b" may not use queue "qa"'],
      [TOKENS.workerA2, `lease "${leaseId}" was taken by another token`],
    ] as const) {
      const w = clients(token).workers;
      for (const call of [
        () => w.heartbeat({ leaseId }),
        () => w.completeTask({ leaseId, output: value("stolen") }),
        async () => {
          // CompleteTasks answers per completion: the refusal is the item's code and message.
          const { results } = await w.completeTasks({ completions: [{ leaseId, output: value("stolen") }] });
          const [r] = results;
          throw new ConnectError(r?.message ?? "no result", r?.code ?? Code.Unknown);
        },
        () => w.failTask({ leaseId, error: { type: "X" }, retryable: false }),
      ]) {
        const err = await rpcError(call());
        expect([err.code, err.rawMessage]).toEqual([Code.PermissionDenied, message]);
      }
    }
    const before = (await client.workflows.getRun({ runId })).run;
    expect([RunStatus[before?.status ?? 0], before?.tasks[0]?.attempt]).toEqual(["RUNNING", 1]);
    await clients(TOKENS.workerA).workers.completeTask({ leaseId, output: value(SECRET_OUTPUT) });
    expect((await client.workflows.getRun({ runId })).run?.status).toBe(RunStatus.SUCCEEDED);
  });

  it("writes no token, input or output to its logs", async () => {
    const output = weftd.output;
    expect(output.length).toBeGreaterThan(0);
    for (const secret of [...Object.values(TOKENS), SECRET_INPUT, SECRET_OUTPUT]) {
      expect(output.includes(secret), `weftd's log contains ${secret.slice(0, 12)}…`).toBe(false);
    }
  });
});

describe("streams per client", () => {
  it("refuses one WatchRun or WatchRuns stream more than --max-streams-per-client, per token", async () => {
    const limited = await spawnWeftd({
      auth: true,
      redisUrl: redis.url,
      prefix: weftd.prefix,
      args: [...configArgs, "--max-streams-per-client", "2"],
    });
    try {
      const reader = weftClients(limited.address, [bearer(TOKENS.reader)]);
      const client = weftClients(limited.address, [bearer(TOKENS.client)]);
      const runId = (await client.workflows.trigger({ workflow: "secured" })).run?.id ?? "";
      // Two streams that stay open (the run never ends here) until the test aborts them.
      const abort = new AbortController();
      const opened = [0, 1].map(
        () =>
          new Promise<void>((resolve) => {
            void (async () => {
              try {
                for await (const _ of reader.workflows.watchRun({ runId }, { signal: abort.signal }))
                  resolve();
              } catch {
                // aborted at the end of the test
              }
            })();
          }),
      );
      await Promise.all(opened);
      const err = await rpcError(
        (async () => {
          for await (const _ of reader.workflows.watchRun({ runId })) return;
        })(),
      );
      expect([err.code, err.rawMessage]).toEqual([
        Code.ResourceExhausted,
        'token "reader" already has 2 open streams (limit 2 per client)',
      ]);
      // A WatchRuns stream counts as one of them.
      const many = await rpcError(
        (async () => {
          const requests = (async function* () {
            yield {};
          })();
          for await (const _ of reader.workflows.watchRuns(requests)) return;
        })(),
      );
      expect([many.code, many.rawMessage]).toEqual([
        Code.ResourceExhausted,
        'token "reader" already has 2 open streams (limit 2 per client)',
      ]);
      // Another token is not held back by this one's streams.
      for await (const res of client.workflows.watchRun({ runId })) {
        expect(res.event?.sequence).toBe(1n);
        break;
      }
      abort.abort();
    } finally {
      await limited.stop();
    }
  });
});

describe("starting without tokens", () => {
  it("refuses to run without tokens or --insecure, and says how to configure them", async () => {
    const weftd = spawnWeftd({ redisUrl: redis.url, auth: true });
    const err = await weftd.then(
      () => new Error("weftd started without tokens"),
      (e: Error) => e,
    );
    expect(err.message).toContain(
      "no tokens are configured: list them under auth.tokens in the --config file",
    );
    expect(err.message).toContain(
      "or pass --insecure to run without authentication on a development machine",
    );
  });

  it("runs with --insecure and says so in a warning", async () => {
    const weftd = await spawnWeftd({ redisUrl: redis.url });
    try {
      const warning = weftd.logs.find((l) => l.level === 40 && l.msg.includes("--insecure"));
      expect(warning?.msg).toBe("running with --insecure: every call is accepted without a token");
    } finally {
      await weftd.stop();
    }
  });
});

describe("open services", () => {
  it("closes health when the configuration leaves it out of auth.public", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-auth-public-"));
    writeFileSync(
      join(dir, "weft.yaml"),
      `auth:\n  public: [reflection]\n  tokens:\n    - name: reader\n      sha256: ${hashToken(TOKENS.reader)}\n      scopes: [runs:read]\n`,
    );
    const closed = await spawnWeftd({
      redisUrl: redis.url,
      args: ["--config", join(dir, "weft.yaml")],
      auth: true,
    });
    try {
      const health = (token?: string) =>
        createClient(Health, createGrpcTransport({ baseUrl: closed.baseUrl, interceptors: [bearer(token)] }));
      const anonymous = await rpcError(health().check({ service: "" }));
      expect(anonymous.code).toBe(Code.Unauthenticated);
      expect((await health(TOKENS.reader).check({ service: "" })).status).toBe(1);
    } finally {
      await closed.stop();
    }
  });
});
