/**
 * The SDK's unary calls over gRPC skip Connect's per-call pipeline (sdk/src/grpc-unary.ts). A caller
 * must not be able to tell that transport from Connect's gRPC transport by what a call returns or
 * throws: each case below is sent through both, and their answers are compared.
 */
import { randomUUID } from "node:crypto";
import { getEventListeners } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import {
  type CallOptions,
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { grpcUnaryTransport } from "@weft/sdk";
import { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess } from "./support/index.js";
import { task } from "./support/weft.js";

let redis: RedisServer;
let weftd: WeftdProcess;
const sessions: Http2SessionManager[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
});

afterAll(async () => {
  for (const session of sessions) session.abort();
  await weftd?.stop();
  await redis?.close();
});

/**
 * Leaves a call's deadline out of its headers: weftd ends a long poll just before the deadline it is
 * told, and on a busy machine that answer can come before the client's own timer. These tests are
 * of the client's deadline, which then alone ends the call.
 */
const noServerDeadline: Interceptor = (next) => (req) => {
  req.header.delete("grpc-timeout");
  return next(req);
};

/** Connect's gRPC transport, and the SDK's, both to `baseUrl`, with the same interceptors. */
function transports(baseUrl: string): { connect: Transport; lean: Transport } {
  const tag: Interceptor = (next) => (req) => {
    req.header.set("x-weft-test", "1");
    return next(req);
  };
  const interceptors = [tag, noServerDeadline];
  const connectSession = new Http2SessionManager(baseUrl);
  const leanSession = new Http2SessionManager(baseUrl);
  sessions.push(connectSession, leanSession);
  return {
    connect: createGrpcTransport({ baseUrl, sessionManager: connectSession, interceptors }),
    lean: grpcUnaryTransport({ baseUrl, sessionManager: leanSession, interceptors }),
  };
}

/** What a call returned or threw, in a form both transports must agree on. */
async function outcome(call: () => Promise<unknown>): Promise<unknown> {
  try {
    const message = await call();
    return { ok: message };
  } catch (err) {
    const e = ConnectError.from(err);
    return {
      code: Code[e.code],
      message: e.rawMessage,
      details: e.details.map((d) => ("desc" in d ? d.desc.typeName : d.type)),
      detailBytes: e.details.map((d) =>
        "value" in d && d.value instanceof Uint8Array ? Buffer.from(d.value).toString("base64") : "",
      ),
    };
  }
}

describe("the SDK's unary gRPC transport", () => {
  let workflows: { connect: Client<typeof WorkflowService>; lean: Client<typeof WorkflowService> };
  let workers: { connect: Client<typeof WorkerService>; lean: Client<typeof WorkerService> };

  beforeAll(async () => {
    const t = transports(`http://${weftd.address}`);
    workflows = {
      connect: createClient(WorkflowService, t.connect),
      lean: createClient(WorkflowService, t.lean),
    };
    workers = { connect: createClient(WorkerService, t.connect), lean: createClient(WorkerService, t.lean) };
    await workflows.connect.submitWorkflow({
      definition: { name: "both-ways", tasks: [task("a", [], { queue: "both-ways-q" })] },
    });
  });

  it("answers each call as Connect's gRPC transport does: messages, codes, messages of errors and their details", async () => {
    const calls: [
      string,
      (c: Client<typeof WorkflowService>, w: Client<typeof WorkerService>) => Promise<unknown>,
    ][] = [
      ["GetWorkflow", (c) => c.getWorkflow({ name: "both-ways" })],
      ["GetWorkflow of a missing workflow", (c) => c.getWorkflow({ name: "both-ways-missing" })],
      ["Trigger without a workflow", (c) => c.trigger({ workflow: "" })],
      [
        "SubmitWorkflow with a cycle",
        (c) =>
          c.submitWorkflow({
            definition: {
              name: "cycle",
              tasks: [task("a", ["b"]), task("b", ["a"])],
            },
          }),
      ],
      ["GetRun of a malformed id", (c) => c.getRun({ runId: "not a run id" })],
      ["Heartbeat with a malformed lease", (_c, w) => w.heartbeat({ leaseId: "lease-1" })],
      [
        "PollTask of an empty queue, at once",
        (_c, w) => w.pollTask({ queue: "both-ways-empty", workerId: "w" }),
      ],
    ];
    for (const [name, call] of calls) {
      const viaConnect = await outcome(() => call(workflows.connect, workers.connect));
      const viaLean = await outcome(() => call(workflows.lean, workers.lean));
      expect(viaLean, name).toEqual(viaConnect);
    }
  });

  it("ends a call at its deadline with DEADLINE_EXCEEDED, and an aborted one with CANCELED", async () => {
    const poll = (w: Client<typeof WorkerService>, options: CallOptions) =>
      w.pollTask(
        { queue: `slow-${randomUUID().slice(0, 8)}`, workerId: "w", wait: { seconds: 20n } },
        options,
      );
    for (const w of [workers.connect, workers.lean]) {
      const started = Date.now();
      const late = await outcome(() => poll(w, { timeoutMs: 100 }));
      expect(late).toMatchObject({ code: "DeadlineExceeded" });
      const abort = new AbortController();
      setTimeout(() => abort.abort(), 100).unref();
      const aborted = await outcome(() => poll(w, { signal: abort.signal }));
      expect(aborted).toMatchObject({ code: "Canceled" });
      expect(Date.now() - started, "both calls ended long before the poll's 20 s wait").toBeLessThan(10_000);
    }
  });

  it("runs interceptors in Connect's order and ends their request signal as Connect does", async () => {
    const baseUrl = `http://${weftd.address}`;
    const reasonOf = (signal: AbortSignal | undefined) => {
      if (signal === undefined || !signal.aborted) return "not aborted";
      const reason = signal.reason as Error;
      return reason instanceof ConnectError
        ? `ConnectError ${Code[reason.code]}`
        : `${reason.name}: ${reason.message}`;
    };
    const seen = async (make: typeof createGrpcTransport | typeof grpcUnaryTransport) => {
      const order: string[] = [];
      let signal: AbortSignal | undefined;
      const record =
        (name: string): Interceptor =>
        (next) =>
        async (req) => {
          order.push(`${name} in`);
          signal = req.signal;
          try {
            return await next(req);
          } finally {
            order.push(`${name} out`);
          }
        };
      const sessionManager = new Http2SessionManager(baseUrl);
      sessions.push(sessionManager);
      const transport = make({
        baseUrl,
        sessionManager,
        interceptors: [record("outer"), record("inner"), noServerDeadline],
      });
      const c = createClient(WorkflowService, transport);
      const w = createClient(WorkerService, transport);
      const slowPoll = (options: CallOptions) =>
        w.pollTask(
          { queue: `ends-${randomUUID().slice(0, 8)}`, workerId: "w", wait: { seconds: 20n } },
          options,
        );
      const ends: Record<string, string> = {};
      await c.getWorkflow({ name: "both-ways" });
      ends.answered = reasonOf(signal);
      await outcome(() => c.getWorkflow({ name: "both-ways-missing" }));
      ends.failed = reasonOf(signal);
      await outcome(() => slowPoll({ timeoutMs: 100 }));
      ends.late = reasonOf(signal);
      const abort = new AbortController();
      setTimeout(() => abort.abort(new Error("the caller gave up")), 100).unref();
      await outcome(() => slowPoll({ signal: abort.signal }));
      ends.aborted = reasonOf(signal);
      const gone = new AbortController();
      gone.abort(new Error("aborted before the call"));
      ends.abortedBefore = JSON.stringify(
        await outcome(() => c.getWorkflow({ name: "both-ways" }, { signal: gone.signal })),
      );
      return { order: order.slice(0, 4), ends };
    };
    const viaConnect = await seen(createGrpcTransport);
    expect(viaConnect.order).toEqual(["outer in", "inner in", "inner out", "outer out"]);
    expect(viaConnect.ends).toMatchObject({
      answered: "AbortError: This operation was aborted",
      failed: "ConnectError NotFound",
      late: "ConnectError DeadlineExceeded",
      aborted: "Error: the caller gave up",
    });
    expect(await seen(grpcUnaryTransport)).toEqual(viaConnect);
  });

  it("ends a call whose interceptor throws with that error, as Connect does for an async interceptor", async () => {
    const baseUrl = `http://${weftd.address}`;
    const refuse =
      (at: "at once" | "later"): Interceptor =>
      (next) =>
      (req) => {
        if (at === "at once") throw new Error("refused by an interceptor");
        return Promise.reject(new Error("refused by an interceptor")).then(() => next(req));
      };
    const client = (
      make: typeof createGrpcTransport | typeof grpcUnaryTransport,
      at: "at once" | "later",
    ) => {
      const sessionManager = new Http2SessionManager(baseUrl);
      sessions.push(sessionManager);
      return createClient(WorkflowService, make({ baseUrl, sessionManager, interceptors: [refuse(at)] }));
    };
    const viaConnect = await outcome(() =>
      client(createGrpcTransport, "later").getWorkflow({ name: "both-ways" }),
    );
    expect(viaConnect).toMatchObject({ code: "Unknown", message: "refused by an interceptor" });
    for (const at of ["at once", "later"] as const) {
      const caller = new AbortController();
      const viaLean = await outcome(() =>
        client(grpcUnaryTransport, at).getWorkflow({ name: "both-ways" }, { signal: caller.signal }),
      );
      expect(viaLean, at).toEqual(viaConnect);
      // The call is over: it no longer listens to the caller's signal.
      expect(getEventListeners(caller.signal, "abort"), at).toEqual([]);
    }
  });

  it("passes the answer's headers and trailers to the caller", async () => {
    for (const c of [workflows.connect, workflows.lean]) {
      let header: Headers | undefined;
      let trailer: Headers | undefined;
      await c.getWorkflow(
        { name: "both-ways" },
        {
          onHeader: (h) => {
            header = h;
          },
          onTrailer: (t) => {
            trailer = t;
          },
        },
      );
      expect(header?.get("content-type")).toBe("application/grpc+proto");
      expect(trailer?.get("grpc-status")).toBe("0");
    }
  });

  it("keeps a call's deadline while the connection is still being set up", async () => {
    // A peer that accepts connections and never answers the TLS handshake: the session never gets ready.
    const sockets: Socket[] = [];
    const silent: Server = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as { port: number };
    try {
      const t = transports(`https://127.0.0.1:${port}`);
      for (const transport of [t.connect, t.lean]) {
        const c = createClient(WorkflowService, transport);
        let timer: NodeJS.Timeout | undefined;
        const stillWaiting = new Promise((resolve) => {
          timer = setTimeout(() => resolve({ code: "still waiting 5 s after a deadline of 200 ms" }), 5_000);
        });
        const ended = await Promise.race([
          outcome(() => c.getWorkflow({ name: "x" }, { timeoutMs: 200 })),
          stillWaiting,
        ]);
        clearTimeout(timer);
        expect(ended).toMatchObject({ code: "DeadlineExceeded" });
      }
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it("reports a daemon nobody answers for as UNAVAILABLE, as Connect does", async () => {
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address() as { port: number };
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const t = transports(`http://127.0.0.1:${address.port}`);
    for (const transport of [t.connect, t.lean]) {
      const c = createClient(WorkflowService, transport);
      expect(await outcome(() => c.getWorkflow({ name: "x" }))).toMatchObject({ code: "Unavailable" });
    }
  });
});
