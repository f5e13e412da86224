/**
 * Unary calls over plain gRPC (HTTP/2, protobuf, no compression) are answered by weftd
 * without Connect; every other call goes through Connect. A caller must not be able to tell the two
 * apart by what they answer. Trigger, the hottest, is tested in most detail.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { connect, type IncomingHttpHeaders } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { hashToken } from "@weft/daemon";
import { AdminService } from "@weft/sdk/gen/weft/v1/admin_service_pb.js";
import { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import {
  TriggerRequestSchema as RequestSchema,
  type TriggerRequestSchema,
  TriggerResponseSchema,
  WorkflowService,
} from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  grpc,
  grpcClient,
  grpcError,
  grpcUnary,
  type RedisServer,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
} from "./support/index.js";
import { RunStatus, task, value, type WeftClients, weftClients } from "./support/weft.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;
const MAX_REQUEST_BYTES = 64 * 1024;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url, args: ["--max-request-bytes", String(MAX_REQUEST_BYTES)] });
  c = weftClients(weftd.address);
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

interface RawAnswer {
  /** The status came with the response headers (a trailers-only answer). */
  trailersOnly: boolean;
  status: string;
  message: string;
  details: string | undefined;
  body: Buffer;
}

/** One Trigger call over node:http2 with `body` as the request and `headers` added to gRPC's. */
function rawTrigger(body: Buffer, headers: Record<string, string> = {}, address = weftd.address) {
  return rawCall("/weft.v1.WorkflowService/Trigger", body, headers, address);
}

/** One unary call over node:http2 with `body` as the request and `headers` added to gRPC's. */
async function rawCall(
  path: string,
  body: Buffer,
  headers: Record<string, string> = {},
  address = weftd.address,
): Promise<RawAnswer> {
  const session = connect(`http://${address}`);
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    const chunks: Buffer[] = [];
    const fields: IncomingHttpHeaders = {};
    let trailersOnly = false;
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    // The answer is complete with its status: a server that answers before reading the whole
    // request (as Connect does past the size limit) need not read the rest.
    await new Promise<void>((resolve, reject) => {
      stream.once("response", (headers) => {
        Object.assign(fields, headers);
        trailersOnly = headers["grpc-status"] !== undefined;
        if (trailersOnly) resolve();
      });
      stream.once("trailers", (trailers) => {
        Object.assign(fields, trailers);
        resolve();
      });
      stream.once("close", () => reject(new Error("the stream closed without a gRPC status")));
      stream.once("error", reject);
      stream.end(body);
    });
    stream.close();
    return {
      trailersOnly,
      status: String(fields["grpc-status"]),
      message: decodeURIComponent(String(fields["grpc-message"] ?? "")),
      details: fields["grpc-status-details-bin"] as string | undefined,
      body: Buffer.concat(chunks),
    };
  } finally {
    session.close();
  }
}

type Request = MessageInitShape<typeof TriggerRequestSchema>;

function envelope(message: Request, gzip = false): Buffer {
  const plain = toBinary(RequestSchema, create(RequestSchema, message));
  const bytes = gzip ? gzipSync(plain) : plain;
  const frame = Buffer.alloc(5 + bytes.length);
  frame[0] = gzip ? 1 : 0;
  frame.writeUInt32BE(bytes.length, 1);
  frame.set(bytes, 5);
  return frame;
}

/** The call weftd answers itself, with a deadline as most gRPC clients send. */
const direct = (message: Request) => rawTrigger(envelope(message), { "grpc-timeout": "10S" });
/** The same call compressed, which only Connect takes. */
const viaConnect = (message: Request) =>
  rawTrigger(envelope(message, true), { "grpc-encoding": "gzip", "grpc-timeout": "10S" });

async function submitted(): Promise<string> {
  const name = `direct-${randomUUID().slice(0, 8)}`;
  await c.workflows.submitWorkflow({ definition: { name, tasks: [task("t", [], { queue: name })] } });
  return name;
}

describe("Trigger over plain gRPC", () => {
  it("is answered by weftd itself, as Connect answers the same call compressed", async () => {
    const name = await submitted();
    const request = { workflow: name, input: value({ n: 1 }) };
    for (const answer of [
      await direct(request),
      await viaConnect(request),
      await rawTrigger(envelope(request)),
    ]) {
      expect(answer.status).toBe("0");
      const { run, created } = fromBinary(TriggerResponseSchema, answer.body.subarray(5));
      expect(created).toBe(true);
      expect(run?.workflow).toBe(name);
      const { run: stored } = await c.workflows.getRun({ runId: run?.id ?? "" });
      expect(stored?.status).toBe(RunStatus.RUNNING);
    }
  });

  it("answers every refusal with the code, message and details Connect gives", async () => {
    const name = await submitted();
    const cases: [string, Request][] = [
      ["a workflow name that cannot exist", { workflow: "no such/name" }],
      ["an unknown workflow", { workflow: `missing-${randomUUID().slice(0, 8)}` }],
      ["an idempotency key too long", { workflow: name, idempotencyKey: "k".repeat(257) }],
    ];
    for (const [what, request] of cases) {
      const mine = await direct(request);
      const connects = await viaConnect(request);
      // Two paths: weftd's own answers a refusal with trailers only, Connect with headers and trailers.
      expect([mine.trailersOnly, connects.trailersOnly], what).toEqual([true, false]);
      expect(mine.status, what).not.toBe("0");
      expect({ status: mine.status, message: mine.message, details: mine.details }, what).toEqual({
        status: connects.status,
        message: connects.message,
        details: connects.details,
      });
    }
    // Over the size limit, Connect words a compressed request's refusal differently ("after
    // decompression"); for a plain one it says what weftd says.
    const large = await direct({ workflow: name, input: value("x".repeat(MAX_REQUEST_BYTES)) });
    expect([large.trailersOnly, large.status]).toEqual([true, "8"]);
    expect(large.message).toMatch(/^message size \d+ is larger than configured readMaxBytes 65536$/);
  });

  it("reads as any gRPC answer to grpc-js, with and without a deadline", async () => {
    // grpc-js sends no grpc-timeout without a deadline, and one with it: both come to weftd's path.
    const name = await submitted();
    const client = grpcClient(weftd.address);
    try {
      for (const deadline of [Number.POSITIVE_INFINITY, Date.now() + 10_000]) {
        const { run } = await grpcUnary(
          client,
          WorkflowService.method.trigger,
          { workflow: name },
          { deadline },
        );
        expect(run?.workflow).toBe(name);
        const err = await grpcError(
          grpcUnary(client, WorkflowService.method.trigger, { workflow: "no such/name" }, { deadline }),
        );
        expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(err.details).toMatch(/^workflow: /);
      }
    } finally {
      client.close();
    }
  });

  it("answers every unary method of the Weft services as Connect does", async () => {
    await submitted();
    // An empty message: refused by most methods' checks, and listed by the others.
    const empty = Buffer.alloc(5);
    const gzipped = Buffer.alloc(5 + gzipSync(Buffer.alloc(0)).length);
    gzipped[0] = 1;
    gzipped.writeUInt32BE(gzipped.length - 5, 1);
    gzipped.set(gzipSync(Buffer.alloc(0)), 5);
    const methods = [WorkflowService, WorkerService, AdminService].flatMap((s) =>
      s.methods.filter((m) => m.methodKind === "unary"),
    );
    expect(methods.length).toBeGreaterThan(10);
    for (const method of methods) {
      const path = `/${method.parent.typeName}/${method.name}`;
      const mine = await rawCall(path, empty, { "grpc-timeout": "10S" });
      const connects = await rawCall(path, gzipped, { "grpc-encoding": "gzip", "grpc-timeout": "10S" });
      expect({ status: mine.status, message: mine.message, details: mine.details }, path).toEqual({
        status: connects.status,
        message: connects.message,
        details: connects.details,
      });
      if (mine.status === "0") {
        // A success: the same message either way (a list of what this Redis holds).
        expect(fromBinary(method.output, mine.body.subarray(5)), path).toEqual(
          fromBinary(method.output, connects.body.subarray(5)),
        );
      } else {
        expect([mine.trailersOnly, connects.trailersOnly], path).toEqual([true, false]);
      }
    }
  });

  it("refuses malformed requests with a clear code, and goes on serving", async () => {
    const name = await submitted();
    const good = envelope({ workflow: name });
    const compressed = Buffer.from(good);
    compressed[0] = 1;
    const cases: [string, Buffer, string, RegExp][] = [
      ["no message", Buffer.alloc(0), "3", /missing request message/],
      ["a message flagged compressed", compressed, "13", /flagged compressed/],
      ["a message shorter than its envelope says", good.subarray(0, good.length - 1), "3", /promised/],
      ["two messages", Buffer.concat([good, good]), "3", /extra input message/],
      [
        "bytes that are not a TriggerRequest",
        Buffer.from([0, 0, 0, 0, 2, 0xff, 0xff]),
        "3",
        /^the request message is not valid protobuf: /,
      ],
    ];
    for (const [what, request, status, message] of cases) {
      const answer = await rawTrigger(request);
      expect(answer.status, what).toBe(status);
      expect(answer.message, what).toMatch(message);
    }
    expect((await rawTrigger(good)).status).toBe("0");
  });
});

describe("Trigger over plain gRPC, when weftd checks tokens", () => {
  const tokens = { client: `client-${randomUUID()}`, reader: `reader-${randomUUID()}` };
  let secured: WeftdProcess;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-direct-auth-"));
    writeFileSync(
      join(dir, "weft.yaml"),
      "auth:\n  tokens:\n" +
        `    - name: client\n      sha256: ${hashToken(tokens.client)}\n      scopes: [workflows:write, runs:trigger, runs:read]\n` +
        `    - name: reader\n      sha256: ${hashToken(tokens.reader)}\n      scopes: [runs:read]\n`,
    );
    // The same Redis and prefix as the weftd without tokens, which submits the workflows.
    secured = await spawnWeftd({
      redisUrl: redis.url,
      prefix: weftd.prefix,
      args: ["--config", join(dir, "weft.yaml")],
      auth: true,
    });
  });

  afterAll(async () => {
    await secured?.stop();
  });

  it("passes the token check Connect makes, refusing as Connect refuses", async () => {
    const name = await submitted();
    const request = { workflow: name };
    const call = (gzip: boolean, authorization?: string) =>
      rawTrigger(
        envelope(request, gzip),
        {
          ...(gzip ? { "grpc-encoding": "gzip" } : {}),
          ...(authorization === undefined ? {} : { authorization }),
        },
        secured.address,
      );
    const cases: [string, string | undefined, string][] = [
      ["no token", undefined, "16"],
      ["a header that is not a bearer token", `Basic ${tokens.client}`, "16"],
      ["an unknown token", `Bearer not-${tokens.client}`, "16"],
      ["a token without the runs:trigger scope", `Bearer ${tokens.reader}`, "7"],
    ];
    for (const [what, authorization, status] of cases) {
      const mine = await call(false, authorization);
      const connects = await call(true, authorization);
      expect([mine.trailersOnly, connects.trailersOnly], what).toEqual([true, false]);
      expect(mine.status, what).toBe(status);
      expect({ status: mine.status, message: mine.message, details: mine.details }, what).toEqual({
        status: connects.status,
        message: connects.message,
        details: connects.details,
      });
    }
    const allowed = await call(false, `Bearer ${tokens.client}`);
    expect([allowed.trailersOnly, allowed.status]).toEqual([false, "0"]);
    const { run } = fromBinary(TriggerResponseSchema, allowed.body.subarray(5));
    expect(run?.workflow).toBe(name);
  });
});
