import { once } from "node:events";
import { connect, createServer, type IncomingHttpHeaders } from "node:http2";
import type { AddressInfo } from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import {
  GetRunRequestSchema,
  GetRunResponseSchema,
  WorkflowService,
} from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Principal, principalKey } from "../auth.js";
import { CallGuard } from "./call-guard.js";
import { directUnary, directUnaryHandler } from "./grpc-unary.js";
import { envelope } from "./response-stream.js";

/** What the handler saw of its context, by run id asked for. */
const seen = new Map<
  string,
  { header: string | null; timeoutMs: number | undefined; url: string; caller: string }
>();

const server = createServer(
  directUnaryHandler(
    [
      directUnary(
        WorkflowService.method.getRun,
        async (req, ctx: HandlerContext) => {
          seen.set(req.runId, {
            header: ctx.requestHeader.get("x-probe"),
            timeoutMs: ctx.timeoutMs(),
            url: ctx.url,
            caller: ctx.values.get(principalKey)?.name ?? "",
          });
          ctx.responseHeader.set("x-answer-header", "h");
          ctx.responseTrailer.set("x-answer-trailer", "t");
          return { run: { id: req.runId } };
        },
        (_service, _procedure, authorization): Principal | undefined =>
          authorization === "Bearer ok"
            ? { name: "tester", scopes: new Set(), queues: new Set() }
            : undefined,
      ),
    ],
    { readMaxBytes: 1 << 20, guard: new CallGuard(new AbortController().signal, pino({ level: "silent" })) },
  ),
);
let address = "";

beforeAll(async () => {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => {
  server.close();
});

async function getRun(runId: string, headers: Record<string, string>) {
  const session = connect(`http://${address}`);
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": "/weft.v1.WorkflowService/GetRun",
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    const message = toBinary(GetRunRequestSchema, create(GetRunRequestSchema, { runId }));
    const frame = envelope(message);
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    const [response] = (await Promise.all([once(stream, "response"), stream.end(frame)]))[0] as [
      IncomingHttpHeaders,
    ];
    const [trailers] = (await once(stream, "trailers")) as [IncomingHttpHeaders];
    const body = Buffer.concat(chunks);
    return { response, trailers, reply: fromBinary(GetRunResponseSchema, body.subarray(5)) };
  } finally {
    session.close();
  }
}

describe("a handler on weftd's direct gRPC path", () => {
  it("reads its request's headers, deadline, URL and caller, and sets response headers and trailers", async () => {
    const { response, trailers, reply } = await getRun("r1", {
      "x-probe": "p",
      "grpc-timeout": "5S",
      authorization: "Bearer ok",
    });
    expect(reply.run?.id).toBe("r1");
    const r1 = seen.get("r1");
    expect(r1?.header).toBe("p");
    expect(r1?.caller).toBe("tester");
    expect(r1?.url).toBe(`http://${address}/weft.v1.WorkflowService/GetRun`);
    expect(r1?.timeoutMs).toBeGreaterThan(4000);
    expect(r1?.timeoutMs).toBeLessThanOrEqual(5000);
    expect(response["x-answer-header"]).toBe("h");
    expect(response["content-type"]).toBe("application/grpc+proto");
    expect(trailers["x-answer-trailer"]).toBe("t");
    expect(trailers["grpc-status"]).toBe("0");

    await getRun("r2", {});
    expect(seen.get("r2")).toEqual({ header: null, timeoutMs: undefined, url: r1?.url, caller: "" });
  });
});
