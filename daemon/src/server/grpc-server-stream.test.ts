import { once } from "node:events";
import { connect, createServer, type Http2Server, type IncomingHttpHeaders } from "node:http2";
import type { AddressInfo } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type HandlerContext } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { WatchRunRequestSchema, WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { type Principal, principalKey, StreamLimit } from "../auth.js";
import { CallGuard } from "./call-guard.js";
import { directGrpcHandler, directServerStream } from "./grpc-server-stream.js";
import { envelope } from "./response-stream.js";

/** What a stream's handler saw: its caller, and how its call ended for it. */
interface Seen {
  caller: string;
  /** Why its signal aborted, once it did. */
  aborted?: unknown;
  /** The generator's cleanup ran. */
  released: boolean;
}

const TOKEN_OK = "Bearer ok";

function until(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

/** A server of WatchRun on the direct path alone, its handler's behaviour chosen by the run id. */
async function start(options: { maxStreamsPerClient?: number } = {}) {
  const seen = new Map<string, Seen>();
  const shutdown = new AbortController();
  const guard = new CallGuard(shutdown.signal, pino({ level: "silent" }));
  async function* watchRun(req: { runId: string }, ctx: HandlerContext) {
    const record: Seen = { caller: ctx.values.get(principalKey)?.name ?? "", released: false };
    seen.set(req.runId, record);
    ctx.signal.addEventListener("abort", () => {
      record.aborted = ctx.signal.reason;
    });
    try {
      if (req.runId === "fail-first") throw new ConnectError('run "fail-first" not found', Code.NotFound);
      for (let i = 1; i <= 3; i++) yield { event: { runId: req.runId, sequence: BigInt(i) } };
      if (req.runId === "fail-later") throw new ConnectError("no event follows sequence 3", Code.OutOfRange);
      if (req.runId.startsWith("forever")) await until(ctx.signal);
      if (ctx.signal.aborted) throw ctx.signal.reason;
      ctx.responseTrailer.set("x-last", "3");
    } finally {
      record.released = true;
    }
  }
  const server: Http2Server = createServer(
    directGrpcHandler({
      unary: [],
      streams: [
        directServerStream(
          WorkflowService.method.watchRun,
          watchRun,
          (_service, _procedure, authorization) => {
            if (authorization !== TOKEN_OK) throw new ConnectError("invalid token", Code.Unauthenticated);
            return { name: "tester", scopes: new Set(), queues: new Set() } satisfies Principal;
          },
        ),
      ],
      readMaxBytes: 1 << 20,
      guard,
      streamLimit: new StreamLimit(options.maxStreamsPerClient ?? 10),
    }),
  );
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  servers.push(server);
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = (authorization = TOKEN_OK) =>
    createClient(
      WorkflowService,
      createGrpcTransport({
        baseUrl,
        interceptors: [
          (next) => (req) => {
            req.header.set("authorization", authorization);
            return next(req);
          },
        ],
      }),
    );
  return { seen, shutdown, guard, client, baseUrl };
}

const servers: Http2Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});

/** Reads a stream to its end: the sequences it sent, and the error it ended with (if any). */
async function read(stream: AsyncIterable<{ event?: { sequence: bigint } }>) {
  const sequences: number[] = [];
  try {
    for await (const m of stream) sequences.push(Number(m.event?.sequence));
    return { sequences, error: undefined };
  } catch (err) {
    return { sequences, error: ConnectError.from(err) };
  }
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("WatchRun on weftd's direct gRPC path", () => {
  it("sends every message, then status OK with the handler's trailers, to the caller its token names", async () => {
    const { client, seen, guard } = await start();
    let trailer: string | null = null;
    const result = await read(
      client().watchRun({ runId: "three" }, { onTrailer: (t) => (trailer = t.get("x-last")) }),
    );
    expect(result).toEqual({ sequences: [1, 2, 3], error: undefined });
    expect(trailer).toBe("3");
    expect(seen.get("three")).toMatchObject({ caller: "tester", released: true });
    expect(guard.streamsInFlight).toBe(0);
  });

  it("ends with the handler's error: before any message (trailers only) and after some", async () => {
    const { client } = await start();
    const first = await read(client().watchRun({ runId: "fail-first" }));
    expect(first.sequences).toEqual([]);
    expect([first.error?.code, first.error?.rawMessage]).toEqual([
      Code.NotFound,
      'run "fail-first" not found',
    ]);
    const later = await read(client().watchRun({ runId: "fail-later" }));
    expect(later.sequences).toEqual([1, 2, 3]);
    expect([later.error?.code, later.error?.rawMessage]).toEqual([
      Code.OutOfRange,
      "no event follows sequence 3",
    ]);
  });

  it("ends DEADLINE_EXCEEDED at the call's deadline, and the handler's signal says so", async () => {
    const { baseUrl, seen, guard } = await start();
    // A raw HTTP/2 call: a client that does not give up at its deadline itself (Connect's would reset
    // the stream, which reads as a cancel), so the deadline is weftd's to keep.
    const session = connect(baseUrl);
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": "/weft.v1.WorkflowService/WatchRun",
        "content-type": "application/grpc",
        te: "trailers",
        "grpc-timeout": "300m",
        authorization: TOKEN_OK,
      });
      const message = toBinary(
        WatchRunRequestSchema,
        create(WatchRunRequestSchema, { runId: "forever-deadline" }),
      );
      const frame = envelope(message);
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.end(frame);
      const [trailers] = (await once(stream, "trailers")) as [IncomingHttpHeaders];
      expect(trailers["grpc-status"]).toBe(String(Code.DeadlineExceeded));
      // The three messages came first, each in its envelope.
      expect(Buffer.concat(chunks).length).toBeGreaterThan(15);
    } finally {
      session.close();
    }
    await waitFor(() => seen.get("forever-deadline")?.released === true, "the handler's cleanup");
    expect(ConnectError.from(seen.get("forever-deadline")?.aborted).code).toBe(Code.DeadlineExceeded);
    expect(guard.streamsInFlight).toBe(0);
  });

  it("frees the handler when the client cancels", async () => {
    const { client, seen, guard } = await start();
    const abort = new AbortController();
    const reading = read(client().watchRun({ runId: "forever-cancel" }, { signal: abort.signal }));
    await waitFor(() => seen.has("forever-cancel"), "the stream to open");
    abort.abort();
    expect((await reading).error?.code).toBe(Code.Canceled);
    await waitFor(() => seen.get("forever-cancel")?.released === true, "the handler's cleanup");
    expect(ConnectError.from(seen.get("forever-cancel")?.aborted).code).toBe(Code.Canceled);
    await waitFor(() => guard.streamsInFlight === 0, "the guard to count the stream closed");
  });

  it("refuses a bad token, and a stream past the client's limit until one of its streams ends", async () => {
    const { client, seen } = await start({ maxStreamsPerClient: 1 });
    const denied = await read(client("Bearer nope").watchRun({ runId: "three" }));
    expect([denied.error?.code, denied.error?.rawMessage]).toEqual([Code.Unauthenticated, "invalid token"]);
    expect(seen.has("three")).toBe(false);
    const abort = new AbortController();
    const open = read(client().watchRun({ runId: "forever-limit" }, { signal: abort.signal }));
    await waitFor(() => seen.has("forever-limit"), "the first stream to open");
    const refused = await read(client().watchRun({ runId: "three" }));
    expect([refused.error?.code, refused.error?.rawMessage]).toEqual([
      Code.ResourceExhausted,
      'token "tester" already has 1 open streams (limit 1 per client)',
    ]);
    abort.abort();
    await open;
    await waitFor(() => seen.get("forever-limit")?.released === true, "the first stream to end");
    expect(await read(client().watchRun({ runId: "three" }))).toEqual({
      sequences: [1, 2, 3],
      error: undefined,
    });
  });

  it("ends open streams UNAVAILABLE when shutdown begins, and refuses new ones", async () => {
    const { client, seen, shutdown, guard } = await start();
    const open = read(client().watchRun({ runId: "forever-shutdown" }));
    await waitFor(() => seen.has("forever-shutdown"), "the stream to open");
    expect(guard.streamsInFlight).toBe(1);
    shutdown.abort();
    const ended = await open;
    expect(ended.sequences).toEqual([1, 2, 3]);
    expect([ended.error?.code, ended.error?.rawMessage]).toEqual([
      Code.Unavailable,
      "weftd is shutting down, retry on another replica",
    ]);
    const refused = await read(client().watchRun({ runId: "three" }));
    expect(refused.error?.code).toBe(Code.Unavailable);
    expect(guard.streamsInFlight).toBe(0);
  });
});
